"""The wrapper around every tool call: validate, guard, retry, cap.

    outcome = GuardedExecutor({"mcp": mcp, "wasm": wasm, "builtin": builtin}).execute(
        tool, arguments, ctx=ctx
    )

Order of operations, per call:
1. Arguments are validated against the tool's input schema; a failure never reaches the server.
2. Each attempt asks the server's circuit breaker (apps.core.breakers; shared by every worker
   when the store is Redis), then runs in the executor, which enforces `tool.timeout_s`
   natively (MCP request timeout, WASM epoch deadline, ...). No lock is held during the call,
   so threads of one worker calling one server run side by side.
3. Retryable failures (`ToolError.should_retry`) are retried with exponential backoff and equal
   jitter (tenacity); others are returned at once. A timeout is retried only for idempotent
   tools, and never for a cpu-bound builtin (its executor raises it non-retryable: the same
   arguments would burn the same CPU again). Each retry gets a freshly minted credential.
4. A successful result is checked against the output schema, then rendered for the model and
   capped in size; the full result stays in `ToolOutcome.content`.

Only infrastructure failures (unavailable, a retryable timeout) count against the breaker: a tool
saying "invalid timezone" is the tool working, not the server failing. Breakers are per tenant and
server (`breaker_key`), so one tenant's failures never shut a server for another. An executor may
exempt a tool that reaches nothing outside the worker (`breaker_exempt`: the in-process builtins).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from jsonschema import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from apps.core.breakers import CircuitBreakers

from .base import (
    CallContext,
    ToolArgumentsInvalid,
    ToolDefinition,
    ToolError,
    ToolExecutor,
    ToolFailed,
    ToolOutcome,
    ToolOutputInvalid,
    ToolTimeout,
    ToolUnavailable,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL_CAP_BYTES = 4096
MIN_MODEL_CAP_BYTES = 256
_MAX_REPORTED_SCHEMA_ERRORS = 5


__all__ = ["CircuitBreakers", "GuardedExecutor", "breaker_key", "cap_for_model"]


def breaker_key(tool: ToolDefinition, *, tenant_id: str) -> str:
    """The breaker a call goes through: the tool's server, within the calling tenant. MCP and
    WASM server keys name one tenant's row already; a builtin is shared code, and one tenant's
    heavy or failing use of it must not shut it for the others."""
    return f"tool:{tenant_id}:{tool.server_key}"


def _is_not_infrastructure_failure(exc: BaseException) -> bool:
    # A non-retryable timeout is a cpu-bound call stopped at its limit: the arguments' fault,
    # not the server's, so one tenant's heavy input cannot open the breaker for everyone.
    if isinstance(exc, ToolTimeout) and not exc.retryable:
        return True
    return not isinstance(exc, ToolUnavailable | ToolTimeout)


class EqualJitterBackoff:
    """Exponential backoff with "equal jitter": delay n is uniform in [cap_n / 2, cap_n].

    cap_n = min(max_delay, base * 2**(n - 1)). Half the delay is fixed, so successive delays
    grow until they reach the cap, while the random half keeps retrying clients from
    synchronising on a recovering server.
    """

    def __init__(self, base_s: float, max_s: float, *, rng: random.Random | None = None):
        self.base_s = base_s
        self.max_s = max_s
        self._rng = rng or random.Random()

    def __call__(self, retry_state: RetryCallState) -> float:
        cap: float = min(self.max_s, self.base_s * 2.0 ** (retry_state.attempt_number - 1))
        return cap / 2 + self._rng.uniform(0, cap / 2)


class GuardedExecutor:
    """Runs any tool through its source's executor with the guards every call needs.

    `sleep` is how backoff waits; tests inject a recorder. `rng` makes jitter reproducible.
    """

    def __init__(
        self,
        executors: Mapping[str, ToolExecutor],
        *,
        breakers: CircuitBreakers | None = None,
        sleep: Callable[[float], None] = time.sleep,
        model_cap_bytes: int = DEFAULT_MODEL_CAP_BYTES,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._executors = dict(executors)
        self.breakers = breakers or CircuitBreakers()
        self._sleep = sleep
        if model_cap_bytes < MIN_MODEL_CAP_BYTES:
            raise ValueError(f"model_cap_bytes must be at least {MIN_MODEL_CAP_BYTES}")
        self._cap = model_cap_bytes
        self._rng = rng or random.Random()
        self._clock = clock

    def execute(
        self, tool: ToolDefinition, arguments: Mapping[str, Any], *, ctx: CallContext
    ) -> ToolOutcome:
        started = self._clock()
        attempts = 0

        def elapsed_ms() -> float:
            return (self._clock() - started) * 1000

        try:
            validate_arguments(tool, arguments)
            executor = self._executors.get(tool.source)
            if executor is None:
                raise ToolFailed(f"no executor for source {tool.source!r}", code="no_executor")
            key = breaker_key(tool, tenant_id=ctx.tenant_id)
            exempt = getattr(executor, "breaker_exempt", None)
            guarded = not (exempt is not None and exempt(tool))

            def attempt() -> ToolOutcome:
                nonlocal attempts
                attempts += 1
                if not guarded:  # nothing outside this process to spare (breaker_exempt)
                    return executor.execute(
                        tool, arguments, ctx=ctx if attempts == 1 else ctx.for_retry()
                    )
                admission = self.breakers.allow(key)
                if not admission:
                    raise ToolUnavailable(
                        f"circuit open for {tool.server_key}: recent calls failed; not calling",
                        code="circuit_open",
                        retryable=False,
                        maybe_executed=False,
                    )
                # Credentials are single-use: a retry presents a new one.
                attempt_ctx = ctx if attempts == 1 else ctx.for_retry()
                try:
                    result = executor.execute(tool, arguments, ctx=attempt_ctx)
                except Exception as exc:
                    self.breakers.record(
                        key, ok=_is_not_infrastructure_failure(exc), admission=admission
                    )
                    raise
                self.breakers.record(key, ok=True, admission=admission)
                return result

            def log_retry(state: RetryCallState) -> None:
                exc = state.outcome.exception() if state.outcome else None
                logger.warning(
                    "tool %s attempt %d failed (%s); retrying in %.2fs",
                    tool.name,
                    state.attempt_number,
                    getattr(exc, "code", type(exc).__name__),
                    state.upcoming_sleep,
                    extra=_log_extra(tool, ctx),
                )

            retrying = Retrying(
                stop=stop_after_attempt(tool.retry.max_attempts),
                wait=EqualJitterBackoff(
                    tool.retry.base_delay_s, tool.retry.max_delay_s, rng=self._rng
                ),
                retry=retry_if_exception(
                    lambda e: (
                        isinstance(e, ToolError) and e.should_retry(idempotent=tool.idempotent)
                    )
                ),
                sleep=self._sleep,
                before_sleep=log_retry,
                reraise=True,
            )
            raw = retrying(attempt)
            validate_output(tool, raw.content)
            model_text, truncated = cap_for_model(render_for_model(raw.content), self._cap)
            return ToolOutcome(
                ok=True,
                content=raw.content,
                model_text=model_text,
                truncated=truncated,
                attempts=attempts,
                latency_ms=elapsed_ms(),
            )
        except ToolError as exc:
            logger.info(
                "tool %s failed: %s",
                tool.name,
                exc.code,
                extra={**_log_extra(tool, ctx), "attempts": attempts},
            )
            return _failure(exc.code, exc.message, attempts, elapsed_ms(), self._cap)
        except Exception:
            # An executor bug must not take the turn down: the model is told, the trace has it.
            logger.exception("tool %s crashed", tool.name, extra=_log_extra(tool, ctx))
            return _failure(
                "internal_error", "the tool executor crashed", attempts, elapsed_ms(), self._cap
            )


def _failure(code: str, message: str, attempts: int, latency_ms: float, cap: int) -> ToolOutcome:
    text, _ = cap_for_model(f"Tool call failed ({code}): {message}", cap)
    return ToolOutcome(
        ok=False,
        error_code=code,
        error_message=message,
        model_text=text,
        attempts=attempts,
        latency_ms=latency_ms,
    )


def _log_extra(tool: ToolDefinition, ctx: CallContext) -> dict[str, str]:
    # Never the arguments or the credential: both may carry secrets or personal data.
    return {
        "tool": tool.name,
        "server": tool.server_key,
        "tenant_id": ctx.tenant_id,
        "session_id": ctx.session_id,
        "turn_id": ctx.turn_id,
    }


@lru_cache(maxsize=512)
def _compiled_validator(schema_json: str) -> Validator:
    # Compiling a schema costs far more than validating against it; catalogs are small.
    schema = json.loads(schema_json)
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _validator(schema: Mapping[str, Any]) -> Validator:
    return _compiled_validator(json.dumps(schema, sort_keys=True))


def _schema_errors(schema: Mapping[str, Any], instance: Any) -> list[str]:
    errors = sorted(_validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [
        f"{e.json_path}: {e.message}" if e.absolute_path else e.message
        for e in errors[:_MAX_REPORTED_SCHEMA_ERRORS]
    ]


def validate_arguments(tool: ToolDefinition, arguments: Any) -> None:
    if not isinstance(arguments, Mapping):
        raise ToolArgumentsInvalid("arguments must be a JSON object")
    try:
        problems = _schema_errors(tool.input_schema, dict(arguments))
    except SchemaError as exc:
        raise ToolFailed(
            f"the catalog's input schema for {tool.name} is invalid: {exc.message}",
            code="input_schema_invalid",
        ) from exc
    if problems:
        raise ToolArgumentsInvalid(
            "arguments do not match the input schema: " + "; ".join(problems)
        )


def validate_output(tool: ToolDefinition, content: Any) -> None:
    if tool.output_schema is None:
        return
    try:
        problems = _schema_errors(tool.output_schema, content)
    except SchemaError as exc:
        raise ToolOutputInvalid(
            f"the catalog's output schema for {tool.name} is invalid: {exc.message}",
            code="output_schema_invalid",
        ) from exc
    if problems:
        raise ToolOutputInvalid("result does not match the output schema: " + "; ".join(problems))


def render_for_model(content: Any) -> str:
    if isinstance(content, str):
        return content
    try:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ToolOutputInvalid(f"result is not JSON-serialisable: {exc}") from exc


def cap_for_model(text: str, cap_bytes: int) -> tuple[str, bool]:
    """Cut `text` to at most `cap_bytes` UTF-8 bytes, marker included. Returns (text, truncated)."""
    data = text.encode("utf-8")
    total = len(data)
    if total <= cap_bytes:
        return text, False
    # Size the marker with `total` standing in for the kept count: it has at least as many
    # digits, so the real marker is never longer than the space reserved for it.
    template = "\n[truncated: first {kept} of {total} bytes shown; the full result is stored]"
    reserved = len(template.format(kept=total, total=total).encode("utf-8"))
    if cap_bytes < reserved:
        raise ValueError(f"cap_bytes must leave room for the truncation marker ({reserved} bytes)")
    kept = cap_bytes - reserved
    # errors="ignore" drops a multi-byte character cut in half rather than emitting U+FFFD.
    head = data[:kept].decode("utf-8", errors="ignore")
    marker = template.format(kept=len(head.encode("utf-8")), total=total)
    return head + marker, True
