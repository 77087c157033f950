"""MCP over websocket, client and server side.

The official `mcp` SDK 2.x ships stdio, SSE and streamable-HTTP transports but no websocket
transport (v1 had a client only). These two adapters fill the gap with the `websockets` package
and the SDK's own message types: one JSON-RPC message per text frame, subprotocol "mcp" (what the
v1 SDK's websocket client spoke), so anything built on `ClientSession` / the lowlevel `Server`
works unchanged over them.

    async with websocket_client("ws://host/mcp", headers={...}) as (read, write): ...

    async def handler(ws):                       # websockets.asyncio.server.serve(handler, ...)
        async with websocket_server_transport(ws) as (read, write):
            await server.run(read, write, server.create_initialization_options())
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from apps.core.egress import STRICT, EgressPolicy
from apps.core.egress.sockets import connect_checked

logger = logging.getLogger(__name__)

MCP_SUBPROTOCOL = Subprotocol("mcp")
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

ReadStream = MemoryObjectReceiveStream[SessionMessage | Exception]
WriteStream = MemoryObjectSendStream[SessionMessage]


@asynccontextmanager
async def _bridge(ws: Any, *, request: Any = None) -> AsyncIterator[tuple[ReadStream, WriteStream]]:
    """Pump frames between a websockets connection and the SDK's message streams.

    When either direction fails the read side is closed, so the session sees end-of-stream and
    wakes every waiting request with CONNECTION_CLOSED instead of leaving it hanging.
    """
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    metadata = ServerMessageMetadata(request_context=request) if request is not None else None

    async def reader() -> None:
        async with read_writer:
            try:
                async for frame in ws:
                    try:
                        message = types.jsonrpc_message_adapter.validate_json(frame, by_name=False)
                    except ValueError as exc:
                        await read_writer.send(exc)
                        continue
                    await read_writer.send(SessionMessage(message, metadata=metadata))
            except ConnectionClosed:
                pass
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass

    async def writer() -> None:
        try:
            async with write_reader:
                async for session_message in write_reader:
                    await ws.send(
                        session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    )
        except (ConnectionClosed, anyio.ClosedResourceError, anyio.BrokenResourceError):
            await read_writer.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        tg.start_soon(writer)
        try:
            yield read_stream, write_stream
        finally:
            tg.cancel_scope.cancel()


@asynccontextmanager
async def websocket_client(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    open_timeout_s: float = 10.0,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    egress: EgressPolicy = STRICT,
) -> AsyncIterator[tuple[ReadStream, WriteStream]]:
    """Client transport: connect to `url` (ws:// or wss://), sending `headers` in the handshake.

    The TCP connection is made here, to an address `egress` checked, and handed to websockets
    as `sock`: websockets then neither resolves the name again nor uses a proxy from the
    environment, nor follows a redirect elsewhere; TLS is still verified against the URL's host.
    """
    target = parse_uri(url)
    async with asyncio.timeout(open_timeout_s):
        sock = await connect_checked(egress, target.host, target.port)
    try:
        session = connect(
            url,
            additional_headers=dict(headers or {}),
            subprotocols=[MCP_SUBPROTOCOL],
            open_timeout=open_timeout_s,
            max_size=max_message_bytes,
            sock=sock,
        )
    except BaseException:
        sock.close()
        raise
    async with session as ws:
        async with _bridge(ws) as streams:
            yield streams


@asynccontextmanager
async def websocket_server_transport(ws: Any) -> AsyncIterator[tuple[ReadStream, WriteStream]]:
    """Server transport for one accepted `websockets` connection.

    Each inbound message carries the handshake request as `request_context`, so a tool can read
    the headers the client sent (`ctx.request_context.request.headers`), like over HTTP.
    """
    async with _bridge(ws, request=getattr(ws, "request", None)) as streams:
        yield streams
