"""A stdio MCP server whose tool list comes from a JSON file, re-read at every start.

    python catalog_server.py <spec.json>       spec: {"tools": {"<name>": "<description>"}}

Every tool echoes its `text` argument. Discovery starts the server afresh, so a test changes
what the server offers (a new description = a new schema hash; a removed tool = missing) by
rewriting the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations


def echo(text: str) -> str:
    return text


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    server = MCPServer("warden-catalog-test")
    for name, description in spec["tools"].items():
        server.add_tool(
            echo,
            name=name,
            description=description,
            annotations=ToolAnnotations(read_only_hint=True),
        )
    server.run("stdio")


if __name__ == "__main__":
    main()
