"""The MCP connection pool: one long-lived SDK client per server, behind a synchronous API.

Callers are synchronous (Celery workers, Django views), the `mcp` SDK is async. `McpClientPool`
runs one asyncio loop in a daemon thread; each server gets one `mcp.Client` owned by a task on
that loop, reused by every call in the process. A connection whose transport ends (server
exited, socket closed) or that fails a call is dropped, and the next call connects afresh. A
connection idle for longer than `ping_after_idle_s` is probed before use, so a server that died
between turns is replaced before the tool call is sent rather than failing it.

Transports: stdio (command, args, env), streamable HTTP (url), SSE (url) and websocket (url; the
SDK has no websocket transport, see mcp_websocket.py).

The per-call credential reaches the server without the model ever seeing it:
- streamable HTTP / SSE: as the `credential_header` header of that call's HTTP request, on the
  pooled connection (the SDK runs each POST in a task that inherits the caller's context).
- stdio / websocket: the environment and the handshake are fixed per connection, so a call that
  carries a credential gets its own short-lived connection (`credential_env` /
  `credential_header`), closed after the call.
Servers configured with neither setting never receive the credential and always share the pool.

stdio servers get exactly the environment in their config (the SDK's habit of adding HOME, PATH,
USER… from the calling process is switched off below), and start only in processes that called
`allow_stdio_servers()` — Celery workers and the operator's CLI, never a web process.

Failures come out as ToolErrors: a lost or refused connection and HTTP 429/502/503/504 →
ToolUnavailable (with `maybe_executed` saying whether the request may have run); a request
timeout → ToolTimeout; a result breaking the tool's output schema → ToolOutputInvalid.

Network transports connect only through the config's `egress` policy (apps.core.egress): the
address is checked after DNS resolution, where the socket connects, and environment proxies are
ignored. Whatever keeps a network server from answering the handshake (the guard, a closed
port, DNS, TLS, something that is not an MCP server) is one `connect_failed` with one message:
the cause goes to the operator log (`warden.egress`) only, so a tenant cannot use discovery to
map the platform's network.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client import stdio as _sdk_stdio
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import (
    CONNECTION_CLOSED,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    REQUEST_TIMEOUT,
    CallToolResult,
    Implementation,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from apps.core.egress import STRICT, EgressPolicy
from apps.core.egress.httpx2_guard import GuardedAsyncTransport

from .base import (
    ProgressReporter,
    ToolArgumentsInvalid,
    ToolDiscoveryError,
    ToolError,
    ToolFailed,
    ToolOutputInvalid,
    ToolTimeout,
    ToolUnavailable,
)
from .mcp_websocket import websocket_client

logger = logging.getLogger(__name__)
egress_log = logging.getLogger("warden.egress")

TransportKind = Literal["stdio", "streamable_http", "sse", "websocket"]


# The SDK merges `get_default_environment()` (HOME, LOGNAME, PATH, SHELL, TERM, USER of the calling
# process) under the configured env, and nothing can remove a key from that merge. A stdio server
# must see only what its config gives it, so the SDK's default is replaced, for this process.
def _nothing_inherited() -> dict[str, str]:
    return {}


_sdk_stdio.get_default_environment = _nothing_inherited


class StdioNotAllowed(ToolError):
    """This process may not start stdio servers (a web process, or one never allowed to)."""

    default_code = "stdio_not_allowed_here"


# Default deny: a stdio server is a process on this host, started for a tenant. Only processes
# meant to run tenant work (Celery workers) or the operator's own commands may start one; a web
# process never does, whatever code path would try.
_stdio_allowed_by: str | None = None


def allow_stdio_servers(reason: str) -> None:
    """Let this process (and processes it forks) start stdio servers; `reason` is logged."""
    global _stdio_allowed_by
    _stdio_allowed_by = reason
    logger.info("stdio MCP servers allowed in this process: %s", reason)


def forbid_stdio_servers() -> None:
    global _stdio_allowed_by
    _stdio_allowed_by = None


def stdio_servers_allowed() -> bool:
    return _stdio_allowed_by is not None


def _check_stdio_allowed(config: McpServerConfig) -> None:
    if config.transport == "stdio" and _stdio_allowed_by is None:
        raise StdioNotAllowed(
            f"stdio MCP server {config.key} cannot start in this process (pid {os.getpid()}): "
            "stdio servers run on workers only"
        )


CLIENT_INFO = Implementation(name="warden", version="1.0")

_MAX_LIST_PAGES = 50
_CLOSE_TIMEOUT_S = 10.0
_PING_TIMEOUT_S = 5.0
_BACKSTOP_GRACE_S = 5.0
_MAX_ERROR_TEXT = 2000
_HTTP_RETRYABLE_NOT_EXECUTED = {429, 503}
_HTTP_RETRYABLE_MAYBE_EXECUTED = {502, 504}

T = TypeVar("T")


@dataclass(frozen=True)
class McpServerConfig:
    """How to reach one MCP server. `key` identifies it in the pool and the circuit breakers.

    `env` (stdio) and `headers` (HTTP, websocket) carry the server's static auth secret, already
    decrypted by the caller; they are kept out of repr(). `env` is the stdio server's whole
    environment: nothing of this process's environment is added to it. `egress` decides which
    addresses a network transport may connect to (default: public addresses only).
    """

    key: str
    transport: TransportKind
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    credential_header: str | None = None
    credential_env: str | None = None
    connect_timeout_s: float = 15.0
    ping_after_idle_s: float | None = 30.0
    egress: EgressPolicy = STRICT

    def __post_init__(self) -> None:
        if self.transport not in ("stdio", "streamable_http", "sse", "websocket"):
            raise ValueError(f"unknown MCP transport {self.transport!r}")
        if self.transport == "stdio":
            if not self.command:
                raise ValueError("a stdio MCP server needs a command")
            if self.credential_header:
                raise ValueError(
                    "stdio servers take the credential in credential_env, not a header"
                )
        else:
            schemes = (
                ("ws://", "wss://") if self.transport == "websocket" else ("http://", "https://")
            )
            if not self.url or not self.url.startswith(schemes):
                raise ValueError(f"a {self.transport} MCP server needs a {schemes[0]}… URL")
            if self.credential_env:
                raise ValueError(
                    "only stdio servers take the credential in an environment variable"
                )
        object.__setattr__(self, "args", tuple(self.args))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> McpServerConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown MCP server settings: {sorted(unknown)}")
        return cls(**data)

    @property
    def delivers_credential(self) -> bool:
        return bool(self.credential_header or self.credential_env)


def _header_value(header: str, credential: str) -> str:
    return f"Bearer {credential}" if header.lower() == "authorization" else credential


# ---------------------------------------------------------------------------------------------
# HTTP plumbing: per-call headers and what the HTTP layer saw, carried in a context variable.


@dataclass
class _CallState:
    header: tuple[str, str] | None = None
    http_status: int | None = None
    connect_failed: bool = False


_CALL_STATE: contextvars.ContextVar[_CallState | None] = contextvars.ContextVar(
    "warden_mcp_call_state", default=None
)


class _ObservingTransport(httpx2.AsyncBaseTransport):
    """Adds the calling task's credential header and records the HTTP status it got back.

    The SDK maps an HTTP 503 and a JSON-RPC internal error to the same MCPError; the status
    recorded here is what tells a retryable overload from a tool bug. Connections go through
    the egress guard.
    """

    def __init__(self, egress: EgressPolicy) -> None:
        self._inner = GuardedAsyncTransport(egress)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        state = _CALL_STATE.get()
        if state is not None and state.header is not None:
            name, value = state.header
            request.headers[name] = value
        try:
            response = await self._inner.handle_async_request(request)
        except httpx2.ConnectError:
            if state is not None:
                state.connect_failed = True
            raise
        if state is not None and request.method == "POST":
            state.http_status = response.status_code
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _http_client_factory(egress: EgressPolicy) -> Callable[..., httpx2.AsyncClient]:
    """The SDK's `httpx_client_factory`: clients that check every connection and, with
    trust_env off, never route through a proxy from the environment."""

    def make(
        headers: Mapping[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=dict(headers or {}),
            timeout=timeout or httpx2.Timeout(30.0, read=300.0),
            auth=auth,
            transport=_ObservingTransport(egress),
            trust_env=False,
        )

    return make


@asynccontextmanager
async def _streamable_http(config: McpServerConfig) -> AsyncIterator[Any]:
    assert config.url is not None
    async with _http_client_factory(config.egress)(config.headers) as client:
        async with streamable_http_client(config.url, http_client=client) as streams:
            yield streams


def _transport(config: McpServerConfig, credential: str | None) -> AbstractAsyncContextManager[Any]:
    if config.transport == "stdio":
        assert config.command is not None
        _check_stdio_allowed(config)
        env = dict(config.env)
        if credential is not None and config.credential_env:
            env[config.credential_env] = credential
        params = StdioServerParameters(
            command=config.command, args=list(config.args), env=env, cwd=config.cwd
        )
        return stdio_client(params)
    assert config.url is not None
    if config.transport == "streamable_http":
        return _streamable_http(config)
    if config.transport == "sse":
        return sse_client(
            config.url,
            headers=dict(config.headers),
            timeout=config.connect_timeout_s,
            httpx_client_factory=_http_client_factory(config.egress),
        )
    headers = dict(config.headers)
    if credential is not None and config.credential_header:
        headers[config.credential_header] = _header_value(config.credential_header, credential)
    return websocket_client(
        config.url, headers=headers, open_timeout_s=config.connect_timeout_s, egress=config.egress
    )


@asynccontextmanager
async def _watched(
    transport: AbstractAsyncContextManager[Any], on_end: Callable[[], None]
) -> AsyncIterator[Any]:
    """Pass a transport's streams through, calling `on_end` when the server side goes away.

    The SDK only notices a dead transport when a request fails; watching the read side lets the
    pool drop such a connection before the next call is sent to it.
    """
    async with transport as (read_stream, write_stream):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def pump() -> None:
            try:
                async with send:
                    async for item in read_stream:
                        await send.send(item)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
                pass
            finally:
                on_end()

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            try:
                yield receive, write_stream
            finally:
                tg.cancel_scope.cancel()


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:_MAX_ERROR_TEXT]


class _Connection:
    """One live `mcp.Client`, owned by a task on the pool's loop (anyio scopes are task-bound)."""

    def __init__(self, config: McpServerConfig, credential: str | None = None):
        self.config = config
        self._credential = credential
        self.client: Client | None = None
        self.alive = False
        self.last_used = time.monotonic()
        self._stop = asyncio.Event()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._task = asyncio.create_task(self._main(), name=f"mcp-connection:{self.config.key}")
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.config.connect_timeout_s)
        except TimeoutError:
            # Stuck in the handshake, where the stop event is not awaited: cancel instead.
            await self.close(cancel=True)
            if self._ready.done() and not self._ready.cancelled():
                self._ready.exception()  # retrieved: we report the timeout instead
            timed_out = f"timed out after {self.config.connect_timeout_s:g}s"
            if self.config.transport != "stdio":
                # A port that accepts and stays silent must look like any other failure.
                raise self._connect_failed(timed_out) from None
            raise ToolUnavailable(
                f"connecting to MCP server {self.config.key} {timed_out}",
                code="connect_timeout",
                maybe_executed=False,
            ) from None

    def _connect_failed(self, cause: str) -> ToolUnavailable:
        """The handshake failed. For a network server the tenant learns only that; the
        operator log says why (guard refusal, refused port, DNS, TLS, not an MCP server)."""
        key = self.config.key
        if self.config.transport == "stdio":
            message = f"cannot connect to MCP server {key}: {cause}"
        else:
            where = urlsplit(self.config.url or "")
            egress_log.warning(
                "MCP server %s (%s, %s) unreachable: %s",
                key,
                self.config.transport,
                where.netloc.rpartition("@")[2],
                cause,
                extra={"mcp_server": key, "egress_cause": cause},
            )
            message = f"cannot connect to MCP server {key}"
        return ToolUnavailable(message, code="connect_failed", maybe_executed=False)

    def _ended(self) -> None:
        self.alive = False
        self._stop.set()

    async def _main(self) -> None:
        try:
            transport = _watched(_transport(self.config, self._credential), self._ended)
            async with Client(transport, client_info=CLIENT_INFO, cache=None) as client:
                self.client = client
                self.alive = True
                self._ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(self._connect_failed(_describe(exc)))
            elif not self._stop.is_set():
                logger.warning("MCP connection %s ended: %s", self.config.key, _describe(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.alive = False
            if not self._ready.done():
                self._ready.set_exception(self._connect_failed("closed during the handshake"))

    async def ping(self) -> bool:
        """Is the server still answering? A cheap round trip before reusing an idle connection.

        `ping` no longer exists at the 2026-07-28 protocol revision; there, `server/discover`
        is the cheapest request a server must answer.
        """
        client = self.client
        assert client is not None
        try:
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                probe = client.session.send_discover(client.protocol_version)
                await asyncio.wait_for(probe, _PING_TIMEOUT_S)
            else:
                await asyncio.wait_for(client.send_ping(), _PING_TIMEOUT_S)
        except Exception as exc:
            logger.info("MCP server %s failed its ping: %s", self.config.key, _describe(exc))
            return False
        return True

    async def close(self, *, cancel: bool = False) -> None:
        self._stop.set()
        if self._task is None or self._task.done():
            return
        if cancel:
            self._task.cancel()
        done, _ = await asyncio.wait({self._task}, timeout=_CLOSE_TIMEOUT_S)
        if not done:
            self._task.cancel()


class McpClientPool:
    """Process-wide MCP connections behind a synchronous API. See the module docstring.

    Safe to call from any thread except the pool's own loop thread. After a fork (Celery
    prefork) the child starts with an empty pool: the parent's connections are not shared.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        # Touched only from the loop thread.
        self._connections: dict[str, _Connection] = {}
        self._key_locks: dict[str, asyncio.Lock] = {}
        self._closing: set[asyncio.Task[None]] = set()

    # -- synchronous API -----------------------------------------------------------------------

    def list_tools(
        self, config: McpServerConfig, *, timeout_s: float = 30.0
    ) -> list[dict[str, Any]]:
        """The server's tools, all pages, in wire form (`inputSchema`, ...).

        A list the SDK cannot even parse → ToolDiscoveryError; checking that the tools are fit
        for the catalog is mcp.validate_tool_list's job.
        """
        _check_stdio_allowed(config)
        return self._run(
            self._list_tools(config, timeout_s),
            timeout_s + config.connect_timeout_s + _BACKSTOP_GRACE_S,
        )

    def call_tool(
        self,
        config: McpServerConfig,
        name: str,
        arguments: Mapping[str, Any],
        *,
        timeout_s: float,
        credential: str | None = None,
        progress: ProgressReporter | None = None,
    ) -> CallToolResult:
        """One `tools/call`. Raises a ToolError subclass on failure (an isError result is
        returned as is; McpExecutor turns it into ToolFailed). `progress` receives the server's
        progress notifications, on the pool's loop thread (it must not block)."""
        _check_stdio_allowed(config)
        return self._run(
            self._call(config, name, dict(arguments), timeout_s, credential, progress),
            timeout_s + config.connect_timeout_s + _BACKSTOP_GRACE_S,
        )

    def close_server(self, key: str) -> None:
        """Drop one server's connection (after its config changed, say)."""
        if self._loop is not None:
            self._run(self._close_key(key), _CLOSE_TIMEOUT_S + _BACKSTOP_GRACE_S)

    def close(self) -> None:
        """Close every connection (stopping stdio servers) and stop the loop thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or self._pid != os.getpid():
            return
        future = asyncio.run_coroutine_threadsafe(self._close_all(), loop)
        try:
            future.result(_CLOSE_TIMEOUT_S + _BACKSTOP_GRACE_S)
        except Exception:
            logger.warning("closing MCP connections failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_CLOSE_TIMEOUT_S)
        if not thread.is_alive():
            loop.close()

    def connected_keys(self) -> list[str]:
        """Keys of servers with a live pooled connection (for health pages and tests)."""
        return [key for key, conn in list(self._connections.items()) if conn.alive]

    # -- loop plumbing ---------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid():
                # Forked: the loop thread did not survive; the inherited pipes and sockets
                # belong to the parent's connections, so abandon them rather than close them.
                self._pid = os.getpid()
                self._loop = self._thread = None
                self._connections, self._key_locks, self._closing = {}, {}, set()
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="warden-mcp-pool", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("McpClientPool's synchronous API cannot run on its own loop")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ToolTimeout(f"no answer from the MCP server within {timeout_s:g}s") from None

    async def _connection(self, config: McpServerConfig) -> _Connection:
        lock = self._key_locks.setdefault(config.key, asyncio.Lock())
        async with lock:
            conn = self._connections.get(config.key)
            if conn is not None and (conn.config != config or not conn.alive):
                self._discard(config.key, conn)
                conn = None
            if (
                conn is not None
                and config.ping_after_idle_s is not None
                and time.monotonic() - conn.last_used >= config.ping_after_idle_s
                and not await conn.ping()
            ):
                self._discard(config.key, conn)
                conn = None
            if conn is None:
                conn = _Connection(config)
                await conn.open()
                self._connections[config.key] = conn
            conn.last_used = time.monotonic()
            return conn

    def _discard(self, key: str, conn: _Connection) -> None:
        if self._connections.get(key) is conn:
            del self._connections[key]
        # Closing a stdio server can take seconds (stdin close, grace period, SIGTERM); the
        # caller should not wait for it.
        task = asyncio.get_running_loop().create_task(conn.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_key(self, key: str) -> None:
        conn = self._connections.pop(key, None)
        if conn is not None:
            await conn.close()

    async def _close_all(self) -> None:
        conns = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(*(c.close() for c in conns), *self._closing, return_exceptions=True)

    # -- the work --------------------------------------------------------------------------------

    async def _list_tools(self, config: McpServerConfig, timeout_s: float) -> list[dict[str, Any]]:
        conn = await self._connection(config)
        assert conn.client is not None
        raw_tools: list[dict[str, Any]] = []
        cursor: str | None = None
        try:
            async with asyncio.timeout(timeout_s):
                for _ in range(_MAX_LIST_PAGES):
                    page = await conn.client.list_tools(cursor=cursor, cache_mode="refresh")
                    raw_tools.extend(
                        t.model_dump(mode="json", by_alias=True, exclude_none=True)
                        for t in page.tools
                    )
                    cursor = page.next_cursor
                    if cursor is None:
                        break
                else:
                    raise ToolDiscoveryError(
                        f"server {config.key} lists tools over more than {_MAX_LIST_PAGES} pages"
                    )
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:20]
            ]
            raise ToolDiscoveryError(
                f"server {config.key} returned a malformed tool list: {'; '.join(problems[:5])}",
                problems=problems,
            ) from None
        except TimeoutError:
            raise ToolTimeout(
                f"listing tools on {config.key} took longer than {timeout_s:g}s"
            ) from None
        except MCPError as exc:
            raise self._mapped(config.key, conn, exc, _CallState()) from None
        except (
            OSError,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            httpx2.HTTPError,
        ) as exc:
            raise self._lost(config.key, conn, exc, _CallState()) from None
        return raw_tools

    async def _call(
        self,
        config: McpServerConfig,
        name: str,
        arguments: dict[str, Any],
        timeout_s: float,
        credential: str | None,
        progress: ProgressReporter | None = None,
    ) -> CallToolResult:
        state = _CallState()
        dedicated = False
        if credential is not None and config.delivers_credential:
            if config.transport in ("streamable_http", "sse"):
                assert config.credential_header is not None
                state.header = (
                    config.credential_header,
                    _header_value(config.credential_header, credential),
                )
            else:
                dedicated = True
        if dedicated:
            conn = _Connection(config, credential=credential)
            await conn.open()
        else:
            conn = await self._connection(config)
        assert conn.client is not None
        on_progress = None
        if progress is not None:
            report = progress

            async def on_progress(
                progress: float, total: float | None, message: str | None
            ) -> None:
                report(progress, total, message)

        token = _CALL_STATE.set(state)
        try:
            return await conn.client.call_tool(
                name, arguments, read_timeout_seconds=timeout_s, progress_callback=on_progress
            )
        except MCPError as exc:
            raise self._mapped(config.key, conn, exc, state) from None
        except ValidationError as exc:
            raise ToolOutputInvalid(
                f"{config.key} answered {name} with a malformed result: {_describe(exc)}"
            ) from None
        except RuntimeError as exc:
            # The SDK checks structuredContent against the tool's outputSchema and says so with
            # a RuntimeError; anything else here means the connection is in an unknown state.
            if "structured content" in str(exc) or "Invalid schema" in str(exc):
                raise ToolOutputInvalid(str(exc)[:_MAX_ERROR_TEXT]) from None
            raise self._lost(config.key, conn, exc, state) from None
        except (
            OSError,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            httpx2.HTTPError,
        ) as exc:
            raise self._lost(config.key, conn, exc, state) from None
        finally:
            _CALL_STATE.reset(token)
            conn.last_used = time.monotonic()
            if dedicated:
                await conn.close()

    def _lost(
        self, key: str, conn: _Connection, exc: BaseException, state: _CallState
    ) -> ToolError:
        self._discard(key, conn)
        return ToolUnavailable(
            f"connection to {key} failed during the call: {_describe(exc)}",
            code="connection_lost",
            maybe_executed=not state.connect_failed,
        )

    def _mapped(self, key: str, conn: _Connection, exc: MCPError, state: _CallState) -> ToolError:
        if exc.code == CONNECTION_CLOSED or state.connect_failed:
            self._discard(key, conn)
            return ToolUnavailable(
                f"MCP server {key} went away during the call ({exc.message})",
                code="connect_failed" if state.connect_failed else "connection_lost",
                maybe_executed=not state.connect_failed,
            )
        if exc.code == REQUEST_TIMEOUT:
            return ToolTimeout(f"MCP server {key} did not answer in time")
        status = state.http_status
        if status in _HTTP_RETRYABLE_NOT_EXECUTED or status in _HTTP_RETRYABLE_MAYBE_EXECUTED:
            return ToolUnavailable(
                f"MCP server {key} answered HTTP {status}",
                code=f"http_{status}",
                maybe_executed=status in _HTTP_RETRYABLE_MAYBE_EXECUTED,
            )
        if exc.code == INVALID_PARAMS:
            return ToolArgumentsInvalid(f"{key} rejected the arguments: {exc.message}")
        if exc.code == METHOD_NOT_FOUND:
            return ToolFailed(f"{key} does not know this method or tool", code="not_found")
        return ToolFailed(f"MCP error {exc.code} from {key}: {exc.message}", code="mcp_error")


# ---------------------------------------------------------------------------------------------
# The process-wide pool

_default_pool: McpClientPool | None = None
_default_pool_lock = threading.Lock()


def default_pool() -> McpClientPool:
    """The pool shared by everything in this process; closed at interpreter exit."""
    global _default_pool
    with _default_pool_lock:
        if _default_pool is None:
            _default_pool = McpClientPool()
            atexit.register(_default_pool.close)
        return _default_pool


def _forget_default_pool_in_child() -> None:
    global _default_pool
    _default_pool = None


os.register_at_fork(after_in_child=_forget_default_pool_in_child)
