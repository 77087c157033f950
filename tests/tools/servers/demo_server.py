"""A real MCP server for the tests, on any transport: stdio, streamable-http, sse, websocket.

    python demo_server.py <transport> [--port N]

Network transports bind 127.0.0.1 (port 0 = any free port), then print the port on the first
line of stdout. The socket is listening before the line is printed, so a client may connect as
soon as it has read it: no polling, no sleeping.

HTTP transports sit behind a small fault-injection middleware, driven by the test:
    GET  /_admin/stats                       -> {"calls": {tool: n}} (tools/call requests seen)
    POST /_admin/fail {"tool", "count", "status"} -> answer the next `count` calls with `status`
    POST /_admin/down {"down": bool}          -> answer every tools/call with 503 while down
    POST /_admin/reset
The websocket transport uses Warden's websocket server adapter (the SDK ships none).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("warden-test-server")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def whoami(ctx: Context) -> dict[str, Any]:
    """Report what the server received as the per-call credential, and its process id."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    return {
        "header": headers.get("x-warden-credential") if headers is not None else None,
        "env": os.environ.get("WARDEN_CREDENTIAL"),
        "pid": os.getpid(),
    }


@server.tool()
def fail(message: str) -> str:
    """Always fail, with the given message."""
    raise ToolError(message)


@server.tool()
def huge(size: int) -> str:
    """Return a string of `size` characters."""
    return "x" * size


@server.tool()
async def slow(seconds: float) -> str:
    """Answer after `seconds`."""
    await anyio.sleep(seconds)
    return "done"


@server.tool()
def die() -> str:
    """Kill the server process in the middle of the call."""
    os._exit(3)


class FaultInjection:
    def __init__(self, app: Any):
        self.app = app
        self.reset()

    def reset(self) -> None:
        self.calls: Counter[str] = Counter()
        self.failures: dict[str, tuple[int, int]] = {}
        self.down = False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        if scope["method"] == "POST":
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
        if scope["path"].startswith("/_admin/"):
            await self.admin(scope["path"], body, send)
            return
        tool = _called_tool(body)
        if tool is not None:
            self.calls[tool] += 1
            count, status = self.failures.get(tool, (0, 0))
            if self.down:
                await _respond(send, 503, {"error": "down"})
                return
            if count > 0:
                self.failures[tool] = (count - 1, status)
                await _respond(send, status, {"error": "injected"})
                return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def admin(self, path: str, body: bytes, send: Any) -> None:
        data = json.loads(body or b"{}")
        if path == "/_admin/fail":
            self.failures[data["tool"]] = (data["count"], data.get("status", 503))
        elif path == "/_admin/down":
            self.down = bool(data["down"])
        elif path == "/_admin/reset":
            self.reset()
        await _respond(send, 200, {"calls": dict(self.calls)})


def _called_tool(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("method") == "tools/call":
        return str(data["params"]["name"])
    return None


async def _respond(send: Any, status: int, payload: dict) -> None:
    raw = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    print(sock.getsockname()[1], flush=True)
    return sock


def serve_http(transport: str, port: int) -> None:
    import uvicorn

    if transport == "sse":
        app = server.sse_app(host="127.0.0.1")
    else:
        app = server.streamable_http_app(host="127.0.0.1")
    sock = _listen(port)
    config = uvicorn.Config(FaultInjection(app), log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def serve_websocket(port: int) -> None:
    from websockets.asyncio.server import serve

    from apps.tools.executors.mcp_websocket import MCP_SUBPROTOCOL, websocket_server_transport

    lowlevel = server._lowlevel_server

    async def handler(ws: Any) -> None:
        async with websocket_server_transport(ws) as (read_stream, write_stream):
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())

    async def main() -> None:
        sock = _listen(port)
        async with serve(handler, sock=sock, subprotocols=[MCP_SUBPROTOCOL]) as ws_server:
            await ws_server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("transport", choices=["stdio", "streamable-http", "sse", "websocket"])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.transport == "stdio":
        server.run("stdio")
    elif args.transport == "websocket":
        serve_websocket(args.port)
    else:
        serve_http(args.transport, args.port)
