"""A stdio MCP server that speaks raw JSON-RPC (no SDK) and lists a malformed set of tools.

    python malformed_server.py <bad_schema | duplicate | missing_schema>

Only a server outside the SDK can send a tool list the SDK's own server would refuse to build.
"""

from __future__ import annotations

import json
import sys

GOOD = {"name": "ok", "description": "fine", "inputSchema": {"type": "object", "properties": {}}}
LISTS = {
    "bad_schema": [
        GOOD,
        {"name": "broken", "inputSchema": {"type": "object", "properties": {"x": {"type": 12}}}},
    ],
    "duplicate": [GOOD, dict(GOOD)],
    "missing_schema": [GOOD, {"name": "schemaless", "description": "no inputSchema at all"}],
}


def main() -> None:
    tools = LISTS[sys.argv[1]]
    for line in sys.stdin:
        message = json.loads(line)
        if "id" not in message:
            continue  # a notification
        method = message.get("method")
        if method == "initialize":
            result = {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "malformed", "version": "0"},
            }
        elif method == "tools/list":
            result = {"tools": tools}
        elif method == "ping":
            result = {}
        else:
            error = {"code": -32601, "message": f"method not found: {method}"}
            print(json.dumps({"jsonrpc": "2.0", "id": message["id"], "error": error}), flush=True)
            continue
        print(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}), flush=True)


if __name__ == "__main__":
    main()
