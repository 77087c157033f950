"""Tool executors: one interface (base.py), three sources (mcp, wasm, builtin), one wrapper.

Import the submodules directly (`from apps.tools.executors.mcp import McpExecutor`); this package
re-exports only the shared types so that importing it stays cheap.
"""

from .base import (
    CallContext,
    RetryPolicy,
    ToolArgumentsInvalid,
    ToolDefinition,
    ToolDiscoveryError,
    ToolError,
    ToolExecutor,
    ToolFailed,
    ToolOutcome,
    ToolOutputInvalid,
    ToolTimeout,
    ToolUnavailable,
)

__all__ = [
    "CallContext",
    "RetryPolicy",
    "ToolArgumentsInvalid",
    "ToolDefinition",
    "ToolDiscoveryError",
    "ToolError",
    "ToolExecutor",
    "ToolFailed",
    "ToolOutcome",
    "ToolOutputInvalid",
    "ToolTimeout",
    "ToolUnavailable",
]
