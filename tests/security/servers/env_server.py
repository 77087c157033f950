"""A stdio MCP server that tells who started it: its one tool's description is a JSON object
with its pid, parent pid, working directory and whole environment.

Discovery stores the description in the catalog, so a test sees where the server ran and what
it was given without calling any tool.
"""

from __future__ import annotations

import json
import os

from mcp.server.mcpserver import MCPServer


def environment() -> str:
    return json.dumps(dict(os.environ))


def main() -> None:
    report = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
    }
    server = MCPServer("warden-env-test")
    server.add_tool(environment, name="environment", description=json.dumps(report))
    server.run("stdio")


if __name__ == "__main__":
    main()
