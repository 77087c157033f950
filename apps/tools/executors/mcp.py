"""MCP tools: discovery into catalog entries, and the executor.

    entries = discover(McpServerConfig(key="time", transport="stdio", command="mcp-server-time"))
    executor = McpExecutor({"time": config})          # for GuardedExecutor({"mcp": executor})

Connections, transports and credential delivery live in mcp_pool.py; this module decides what a
server's answers mean: which tool lists are acceptable, what a result's content is, and that a
result flagged `isError` is a ToolFailed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jsonschema import SchemaError
from jsonschema.validators import validator_for
from mcp_types import CallToolResult

from .base import (
    CallContext,
    ToolDefinition,
    ToolDiscoveryError,
    ToolFailed,
    ToolOutcome,
    progress_reporter,
)
from .mcp_pool import McpClientPool, McpServerConfig, default_pool

__all__ = [
    "McpClientPool",
    "McpExecutor",
    "McpServerConfig",
    "default_pool",
    "discover",
    "result_content",
    "schema_hash",
    "tool_definition",
    "validate_tool_list",
]

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_MAX_ERROR_TEXT = 2000

# ---------------------------------------------------------------------------------------------
# Discovery validation


def _schema_problems(where: str, field_name: str, schema: Any) -> list[str]:
    if not isinstance(schema, Mapping):
        return [f"{where}: {field_name} must be a JSON object"]
    if schema.get("type") != "object":
        return [f'{where}: {field_name} must be an object schema ("type": "object")']
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        return [f"{where}: {field_name} is not a valid JSON Schema: {exc.message}"]
    return []


def schema_hash(entry: Mapping[str, Any]) -> str:
    """Fingerprint of what an operator approves: a change means the tool must be re-approved."""
    material = {k: entry.get(k) for k in ("name", "description", "input_schema", "output_schema")}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def validate_tool_list(server_key: str, tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check a `tools/list` answer (wire field names) and turn it into catalog entries.

    All or nothing: one malformed tool rejects the whole list, so a broken or hostile server
    cannot half-update the catalog. Annotations are the server's hints, not facts: they only
    suggest the idempotent flag and risk tier for an operator to confirm.
    """
    problems: list[str] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        name = tool.get("name")
        where = f"tool #{i} ({name!r})"
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            problems.append(f"{where}: name must be 1-128 characters of A-Z a-z 0-9 _ . -")
        elif name in seen:
            problems.append(f"{where}: duplicate name")
        else:
            seen.add(name)
        if not isinstance(tool.get("description", ""), str):
            problems.append(f"{where}: description must be a string")
        problems += _schema_problems(where, "inputSchema", tool.get("inputSchema"))
        if tool.get("outputSchema") is not None:
            problems += _schema_problems(where, "outputSchema", tool.get("outputSchema"))
    if problems:
        raise ToolDiscoveryError(
            f"server {server_key} returned a malformed tool list ({len(problems)} problem(s)): "
            + "; ".join(problems[:5]),
            problems=problems,
        )
    entries = []
    for tool in tools:
        hints = dict(tool.get("annotations") or {})
        read_only = hints.get("readOnlyHint") is True
        # MCP's defaults: a tool that is not read-only is assumed destructive.
        destructive = not read_only and hints.get("destructiveHint", True) is not False
        entry: dict[str, Any] = {
            "name": tool["name"],
            "title": tool.get("title"),
            "description": tool.get("description") or "",
            "input_schema": dict(tool["inputSchema"]),
            "output_schema": dict(tool["outputSchema"]) if tool.get("outputSchema") else None,
            "annotations": hints,
            "source": "mcp",
            "server": server_key,
            "suggested_idempotent": read_only or hints.get("idempotentHint") is True,
            "suggested_risk_tier": "low" if read_only else ("high" if destructive else "medium"),
        }
        entry["schema_hash"] = schema_hash(entry)
        entries.append(entry)
    return entries


def tool_definition(entry: Mapping[str, Any], **overrides: Any) -> ToolDefinition:
    """A ToolDefinition from a discovery entry, taking the suggestions unless overridden."""
    values: dict[str, Any] = {
        "name": entry["name"],
        "description": entry["description"],
        "input_schema": entry["input_schema"],
        "output_schema": entry["output_schema"],
        "source": "mcp",
        "server": entry["server"],
        "idempotent": entry["suggested_idempotent"],
        "risk_tier": entry["suggested_risk_tier"],
    }
    values.update(overrides)
    return ToolDefinition(**values)


# ---------------------------------------------------------------------------------------------
# The executor


def result_content(result: CallToolResult) -> Any:
    """The JSON-able content of a tool result: structured content when the server gave it,
    else the text (one string when all blocks are text), else the content blocks."""
    if result.structured_content is not None:
        return result.structured_content
    blocks = [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in result.content]
    if all(b.get("type") == "text" for b in blocks):
        return "\n".join(b.get("text", "") for b in blocks)
    return blocks


class McpExecutor:
    """Runs MCP tools. `servers` maps `ToolDefinition.server` to the server's config."""

    def __init__(
        self,
        servers: Mapping[str, McpServerConfig] | Callable[[str], McpServerConfig],
        *,
        pool: McpClientPool | None = None,
    ):
        self._servers = servers
        self._pool = pool

    @property
    def pool(self) -> McpClientPool:
        return self._pool or default_pool()

    def _config(self, server: str) -> McpServerConfig:
        try:
            if callable(self._servers):
                return self._servers(server)
            return self._servers[server]
        except (KeyError, LookupError):
            raise ToolFailed(
                f"no MCP server {server!r} is configured", code="unknown_server"
            ) from None

    def execute(
        self, tool: ToolDefinition, arguments: Mapping[str, Any], *, ctx: CallContext
    ) -> ToolOutcome:
        config = self._config(tool.server)
        result = self.pool.call_tool(
            config,
            tool.call_name,
            arguments,
            timeout_s=tool.timeout_s,
            credential=ctx.credential,
            progress=progress_reporter.get(),
        )
        if result.is_error:
            text = result_content(result)
            message = text if isinstance(text, str) else json.dumps(text)[:_MAX_ERROR_TEXT]
            raise ToolFailed(
                message[:_MAX_ERROR_TEXT] or "the tool reported an error", code="tool_error"
            )
        return ToolOutcome(ok=True, content=result_content(result))


def discover(
    server_config: McpServerConfig | Mapping[str, Any],
    *,
    pool: McpClientPool | None = None,
    timeout_s: float = 30.0,
) -> list[dict[str, Any]]:
    """Connect (or reuse the connection), list the server's tools, validate them.

    Returns catalog entries (see validate_tool_list); raises ToolDiscoveryError for a malformed
    list, ToolUnavailable / ToolTimeout when the server cannot be reached.
    """
    config = (
        server_config
        if isinstance(server_config, McpServerConfig)
        else McpServerConfig.from_mapping(server_config)
    )
    raw = (pool or default_pool()).list_tools(config, timeout_s=timeout_s)
    return validate_tool_list(config.key, raw)
