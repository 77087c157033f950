"""The one interface every tool executor implements, and the types that cross it.

Framework-free on purpose: the integrator maps catalog rows (Django models) onto these
dataclasses, and the agent loop only ever sees `ToolOutcome`.

Contract:
- An executor (`McpExecutor`, `WasmExecutor`, `BuiltinExecutor`) runs one attempt. It returns
  `ToolOutcome(ok=True, content=...)` or raises a `ToolError` subclass saying what went wrong.
- `GuardedExecutor` (wrapper.py) wraps executors with validation, retries, a circuit breaker and
  the context-size cap. It implements the same `execute` signature but never raises `ToolError`:
  a failure comes back as `ToolOutcome(ok=False, error_code=..., model_text=...)`, so the model
  can be told what happened.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, Protocol

RiskTier = Literal["low", "medium", "high", "critical"]
ToolSource = Literal["mcp", "wasm", "builtin"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a retryable failure is retried."""

    max_attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError("delays must satisfy 0 <= base_delay_s <= max_delay_s")


@dataclass(frozen=True)
class ToolDefinition:
    """A catalog entry, as the executors need it.

    `server` names where the tool lives: the MCP server key, the WASM module name, or the builtin
    registry name. `remote_name` is the tool's name on that server when the catalog namespaces
    it differently (two servers may both have a `search` tool).
    """

    name: str
    description: str
    input_schema: Mapping[str, Any]
    source: ToolSource
    server: str
    output_schema: Mapping[str, Any] | None = None
    risk_tier: RiskTier = "medium"
    idempotent: bool = False
    timeout_s: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    remote_name: str | None = None

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")

    @property
    def server_key(self) -> str:
        """The circuit-breaker key: one breaker per server, across all its tools."""
        return f"{self.source}:{self.server}"

    @property
    def call_name(self) -> str:
        return self.remote_name or self.name


@dataclass(frozen=True)
class CallContext:
    """Who is calling, for correlation and for scoping the credential.

    `credential` is the ephemeral token minted for this call (credentials.mint_credential). It is
    handed to the tool server, never to the model, and is kept out of repr() so it cannot leak
    into a log line that formats the context. A credential is single-use, so a retried call
    needs a new one: `credential_factory` mints it (`for_retry()`).
    """

    tenant_id: str
    session_id: str
    turn_id: str
    idempotency_key: str
    credential: str | None = field(default=None, repr=False)
    credential_factory: Callable[[], str] | None = field(default=None, repr=False, compare=False)

    def for_retry(self) -> CallContext:
        """This context with a freshly minted credential (itself when there is no factory)."""
        if self.credential_factory is None:
            return self
        return replace(self, credential=self.credential_factory())


@dataclass(frozen=True)
class ToolOutcome:
    """The result of a tool call.

    `content` is the full JSON-able result, stored on the action-graph node. `model_text` is what
    enters the model's context: the rendered result capped in size (with a marker when cut, and
    `truncated` set), or a short explanation of the error.
    """

    ok: bool
    content: Any = None
    model_text: str = ""
    truncated: bool = False
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 1
    latency_ms: float = 0.0


# Progress of a long-running call: (progress, total or None, message or None). Whoever runs the
# call as a job sets a reporter here; builtins see it through the copied context of their thread,
# and the MCP executor forwards the server's progress notifications to it. Reporters must not
# block: they may be called on the MCP pool's event loop.
ProgressReporter = Callable[[float, float | None, str | None], None]
progress_reporter: ContextVar[ProgressReporter | None] = ContextVar(
    "warden_tool_progress", default=None
)


def report_progress(
    progress: float, total: float | None = None, message: str | None = None
) -> None:
    """For builtin tools: report how far a long call has got (a no-op when nobody listens)."""
    reporter = progress_reporter.get()
    if reporter is not None:
        reporter(progress, total, message)


class ToolExecutor(Protocol):
    def execute(
        self, tool: ToolDefinition, arguments: Mapping[str, Any], *, ctx: CallContext
    ) -> ToolOutcome: ...


class ToolError(Exception):
    """A tool call failed. `code` is stable (goes into events and the API); `str()` is human."""

    default_code: ClassVar[str] = "tool_error"
    default_retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.retryable = self.default_retryable if retryable is None else retryable

    def should_retry(self, *, idempotent: bool) -> bool:
        return self.retryable


class ToolArgumentsInvalid(ToolError):
    """The arguments do not match the tool's input schema (or the server rejected them)."""

    default_code = "arguments_invalid"


class ToolTimeout(ToolError):
    """The call did not finish in time.

    Retried only for idempotent tools: a call that timed out may still have had its effect.
    """

    default_code = "timeout"
    default_retryable = True

    def should_retry(self, *, idempotent: bool) -> bool:
        return self.retryable and idempotent


class ToolUnavailable(ToolError):
    """The tool's server could not be reached or went away (retryable).

    `maybe_executed` says whether the request may have reached the server before the failure
    (a server that died mid-call). Such a failure is retried only for idempotent tools, so a
    non-idempotent tool never runs twice; a refused connection is retried for any tool.
    """

    default_code = "unavailable"
    default_retryable = True

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        maybe_executed: bool = True,
    ):
        super().__init__(message, code=code, retryable=retryable)
        self.maybe_executed = maybe_executed

    def should_retry(self, *, idempotent: bool) -> bool:
        return self.retryable and (idempotent or not self.maybe_executed)


class ToolFailed(ToolError):
    """The tool ran and reported an error (non-retryable)."""

    default_code = "failed"


class ToolOutputInvalid(ToolError):
    """The tool answered with something that is not a valid result (bad JSON, wrong schema)."""

    default_code = "output_invalid"


class ToolDiscoveryError(ToolError):
    """A server's tool list is malformed; nothing from it may enter the catalog."""

    default_code = "discovery_invalid"

    def __init__(self, message: str, *, problems: list[str] | None = None, code: str | None = None):
        super().__init__(message, code=code)
        self.problems = list(problems or [])
