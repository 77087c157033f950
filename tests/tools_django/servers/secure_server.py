"""A streamable-HTTP MCP server that verifies Warden's per-call credentials, as a tool server would.

    python secure_server.py        (prints its port on the first line once listening)

Environment: WARDEN_TOOL_CREDENTIAL_KEY (the signing key), EXPECT_TENANT, EXPECT_RESOURCE and
EXPECT_AUTH (the static secret expected as "Authorization: Bearer …").

Tools:
- secure_echo(text): verifies the `X-Warden-Credential` header for tool "secure_echo" on
  EXPECT_RESOURCE in EXPECT_TENANT; answers the verified claims (never the token), or fails
  with "credential refused: <reason>".
- countdown(steps): reports progress at every step, then answers.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from apps.tools.credentials import CredentialRefused, MemoryReplayStore, verify_credential

server = MCPServer("warden-secure-test")
# One process: its own memory is enough to refuse a credential presented twice.
REPLAYS = MemoryReplayStore()


@server.tool()
def secure_echo(text: str, ctx: Context) -> dict[str, Any]:
    """Echo the text, once the caller's credential checks out."""
    headers = ctx.request_context.request.headers  # type: ignore[union-attr]
    token = headers.get("x-warden-credential")
    if not token:
        raise ToolError("credential refused: missing")
    try:
        claims = verify_credential(
            token,
            signing_key=os.environ["WARDEN_TOOL_CREDENTIAL_KEY"],
            tenant_id=os.environ["EXPECT_TENANT"],
            tool="secure_echo",
            resource=os.environ["EXPECT_RESOURCE"],
            replay_store=REPLAYS,
        )
    except CredentialRefused as exc:
        raise ToolError(f"credential refused: {exc.reason}") from None
    return {
        "text": text,
        "tenant": claims.tenant_id,
        "session": claims.session_id,
        "resource": claims.resource,
        "lifetime_s": claims.expires_at - claims.issued_at,
        "auth_ok": headers.get("authorization") == f"Bearer {os.environ['EXPECT_AUTH']}",
    }


@server.tool()
async def countdown(steps: int, ctx: Context) -> str:
    """Count down from `steps`, reporting progress."""
    for done in range(1, steps + 1):
        await ctx.report_progress(done, steps, f"{steps - done} to go")
    return "liftoff"


if __name__ == "__main__":
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    print(sock.getsockname()[1], flush=True)
    app = server.streamable_http_app(host="127.0.0.1")
    uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on")).run(sockets=[sock])
