"""Domain errors of the tools app. HTTP mapping lives in api/ (and apps/core/api/errors.py)."""

from apps.core.exceptions import Conflict, InvalidInput, Unavailable, WardenError


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


class StdioTemplatesInvalid(Unavailable):
    """The operator's stdio templates are misconfigured: no stdio server may start until fixed."""

    code = "stdio_templates_invalid"


class DiscoveryUnavailable(Unavailable):
    """No worker took the discovery (or none answered in time); nothing was changed."""

    code = "discovery_unavailable"
