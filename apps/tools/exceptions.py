"""Domain errors of the tools app. HTTP mapping lives in api/ (and apps/core/api/errors.py)."""

from apps.core.exceptions import Conflict, InvalidInput, WardenError


class McpServerInvalid(InvalidInput):
    code = "invalid_mcp_server"


class ToolInvalid(InvalidInput):
    code = "invalid_tool"


class ToolMissing(Conflict):
    """The tool's server no longer offers it: it cannot be enabled."""

    code = "tool_missing"


class DiscoveryFailed(WardenError):
    """Discovery could not get a usable tool list; the catalog is unchanged.

    `details["reason"]` is the executor's stable code: connect_failed, connect_timeout,
    timeout, discovery_invalid, server_misconfigured, …
    """

    code = "discovery_failed"
