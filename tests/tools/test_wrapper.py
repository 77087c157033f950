"""The wrapper's own rules (retries, breaker, validation, caps), with scripted executors.

The same behaviours are exercised against real MCP servers in test_mcp_http.py; here the
executor is a script so each rule can be pinned down exactly.
"""

import json
from collections.abc import Callable

import pytest

from apps.tools.executors.base import (
    RetryPolicy,
    ToolDefinition,
    ToolFailed,
    ToolOutcome,
    ToolTimeout,
    ToolUnavailable,
)
from apps.tools.executors.wrapper import (
    CircuitBreakers,
    GuardedExecutor,
    breaker_key,
    cap_for_model,
)

SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}


class Scripted:
    """An executor that plays a script: each entry is raised or returned, in turn."""

    def __init__(self, *script: object, then: Callable[[dict], object] | None = None):
        self.script = list(script)
        self.then = then or (lambda args: args["a"] + args["b"])
        self.calls: list[dict] = []

    def execute(self, tool, arguments, *, ctx):
        self.calls.append(dict(arguments))
        step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            raise step
        return ToolOutcome(ok=True, content=step if step is not None else self.then(arguments))


def tool(**overrides) -> ToolDefinition:
    values = {
        "name": "add",
        "description": "add",
        "input_schema": SCHEMA,
        "source": "builtin",
        "server": "calc",
        "idempotent": True,
        "retry": RetryPolicy(max_attempts=4, base_delay_s=1.0, max_delay_s=3.0),
    }
    values.update(overrides)
    return ToolDefinition(**values)


def unavailable(maybe_executed=False):
    return ToolUnavailable("server overloaded", code="http_503", maybe_executed=maybe_executed)


def test_flaky_tool_succeeds_after_retries_with_growing_delays(ctx, sleeps):
    executor = Scripted(unavailable(), unavailable())
    outcome = GuardedExecutor({"builtin": executor}, sleep=sleeps).execute(
        tool(), {"a": 2, "b": 3}, ctx=ctx
    )
    assert outcome.ok and outcome.content == 5
    assert outcome.attempts == 3 and len(executor.calls) == 3
    first, second = sleeps.delays
    # Equal jitter: retry n waits between half and all of min(max, base * 2**(n-1)).
    assert 0.5 <= first <= 1.0 < second <= 2.0


def test_backoff_is_capped_and_gives_up_after_max_attempts(ctx, sleeps):
    executor = Scripted(*[unavailable() for _ in range(10)])
    outcome = GuardedExecutor({"builtin": executor}, sleep=sleeps).execute(
        tool(), {"a": 1, "b": 1}, ctx=ctx
    )
    assert not outcome.ok and outcome.error_code == "http_503"
    assert outcome.attempts == 4 and len(executor.calls) == 4
    assert len(sleeps.delays) == 3
    assert all(d <= 3.0 for d in sleeps.delays) and sleeps.delays[2] >= 1.5
    assert "http_503" in outcome.model_text


def test_non_retryable_error_is_not_retried(ctx, sleeps):
    executor = Scripted(ToolFailed("invalid timezone", code="tool_error"))
    outcome = GuardedExecutor({"builtin": executor}, sleep=sleeps).execute(
        tool(), {"a": 1, "b": 1}, ctx=ctx
    )
    assert (outcome.ok, outcome.error_code, outcome.attempts) == (False, "tool_error", 1)
    assert len(executor.calls) == 1 and sleeps.delays == []
    assert "invalid timezone" in outcome.model_text


def test_non_idempotent_tool_never_runs_twice_after_a_maybe_executed_failure(ctx, sleeps):
    guarded = GuardedExecutor({"builtin": Scripted(unavailable(maybe_executed=True))}, sleep=sleeps)
    outcome = guarded.execute(tool(idempotent=False), {"a": 1, "b": 1}, ctx=ctx)
    assert outcome.error_code == "http_503" and outcome.attempts == 1

    timed_out = Scripted(ToolTimeout("slow"))
    outcome = GuardedExecutor({"builtin": timed_out}, sleep=sleeps).execute(
        tool(idempotent=False), {"a": 1, "b": 1}, ctx=ctx
    )
    assert outcome.error_code == "timeout" and len(timed_out.calls) == 1


def test_refused_connection_is_retried_even_for_non_idempotent_tools(ctx, sleeps):
    # Nothing reached the server, so trying again cannot run the tool twice.
    executor = Scripted(unavailable(maybe_executed=False))
    outcome = GuardedExecutor({"builtin": executor}, sleep=sleeps).execute(
        tool(idempotent=False), {"a": 1, "b": 1}, ctx=ctx
    )
    assert outcome.ok and outcome.attempts == 2


def test_idempotent_timeout_is_retried(ctx, sleeps):
    executor = Scripted(ToolTimeout("slow"))
    outcome = GuardedExecutor({"builtin": executor}, sleep=sleeps).execute(
        tool(), {"a": 1, "b": 1}, ctx=ctx
    )
    assert outcome.ok and outcome.attempts == 2


def test_breaker_opens_after_failures_and_closes_after_a_good_trial_call(ctx, sleeps):
    now = [1000.0]
    breakers = CircuitBreakers(fail_max=2, reset_timeout_s=3600, clock=lambda: now[0])
    executor = Scripted(unavailable(), unavailable(), None, ToolFailed("bad input"))
    guarded = GuardedExecutor({"builtin": executor}, breakers=breakers, sleep=sleeps)
    once = tool(retry=RetryPolicy(max_attempts=1))
    key = breaker_key(once, tenant_id=ctx.tenant_id)

    assert guarded.execute(once, {"a": 1, "b": 1}, ctx=ctx).error_code == "http_503"
    assert breakers.state(key) == "closed"
    assert guarded.execute(once, {"a": 1, "b": 1}, ctx=ctx).error_code == "http_503"
    assert breakers.state(key) == "open"

    rejected = guarded.execute(once, {"a": 1, "b": 1}, ctx=ctx)
    assert rejected.error_code == "circuit_open"
    assert len(executor.calls) == 2  # the open breaker did not call the server

    # Another server is unaffected.
    assert guarded.execute(tool(server="other"), {"a": 1, "b": 1}, ctx=ctx).ok

    now[0] += 3600  # the reset timeout has elapsed
    trial = guarded.execute(once, {"a": 1, "b": 1}, ctx=ctx)
    assert trial.error_code == "failed"  # the trial call ran: a tool error, not a server failure
    assert breakers.state(key) == "closed"
    assert guarded.execute(once, {"a": 2, "b": 2}, ctx=ctx).content == 4


def test_tool_errors_do_not_trip_the_breaker(ctx, sleeps):
    breakers = CircuitBreakers(fail_max=2)
    executor = Scripted(*[ToolFailed("no such file") for _ in range(5)])
    guarded = GuardedExecutor({"builtin": executor}, breakers=breakers, sleep=sleeps)
    for _ in range(5):
        assert guarded.execute(tool(), {"a": 1, "b": 1}, ctx=ctx).error_code == "failed"
    key = breaker_key(tool(), tenant_id=ctx.tenant_id)
    assert breakers.state(key) == "closed" and len(executor.calls) == 5


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"a": "two", "b": 3}, "$.a: 'two' is not of type 'integer'"),
        ({"a": 1}, "'b' is a required property"),
        ({"a": 1, "b": 2, "rm": "-rf"}, "Additional properties are not allowed"),
    ],
)
def test_arguments_failing_the_schema_never_reach_the_executor(ctx, arguments, complaint):
    executor = Scripted()
    outcome = GuardedExecutor({"builtin": executor}).execute(tool(), arguments, ctx=ctx)
    assert outcome.error_code == "arguments_invalid"
    assert complaint in outcome.error_message
    assert executor.calls == []


def test_result_breaking_the_output_schema_is_rejected(ctx):
    definition = tool(output_schema={"type": "object", "required": ["sum"]})
    outcome = GuardedExecutor({"builtin": Scripted({"total": 3})}).execute(
        definition, {"a": 1, "b": 2}, ctx=ctx
    )
    assert outcome.error_code == "output_invalid" and "'sum' is a required property" in (
        outcome.error_message
    )


def test_huge_result_is_capped_for_the_model_but_kept_in_full(ctx):
    rows = [{"id": i, "name": f"row-{i}-é"} for i in range(5000)]
    outcome = GuardedExecutor({"builtin": Scripted(rows)}, model_cap_bytes=4096).execute(
        tool(), {"a": 1, "b": 1}, ctx=ctx
    )
    assert outcome.ok and outcome.truncated
    assert outcome.content == rows
    assert len(outcome.model_text.encode("utf-8")) <= 4096
    assert outcome.model_text.startswith('[{"id":0,"name":"row-0-é"}')
    full = len(json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode())
    assert f"of {full} bytes shown" in outcome.model_text


def test_cap_keeps_small_results_whole_and_never_splits_a_character():
    assert cap_for_model("x" * 300, 300) == ("x" * 300, False)
    text, truncated = cap_for_model("€" * 1000, 400)
    assert truncated and len(text.encode()) <= 400
    assert text.split("\n")[0] == "€" * len(text.split("\n")[0])


def test_executor_crash_becomes_an_error_outcome(ctx):
    outcome = GuardedExecutor({"builtin": Scripted(RuntimeError("bug"))}).execute(
        tool(), {"a": 1, "b": 1}, ctx=ctx
    )
    assert (outcome.ok, outcome.error_code) == (False, "internal_error")


def test_unknown_source_is_an_error_not_a_crash(ctx):
    outcome = GuardedExecutor({}).execute(tool(), {"a": 1, "b": 1}, ctx=ctx)
    assert outcome.error_code == "no_executor"


def test_credential_is_not_in_the_context_repr(ctx):
    from dataclasses import replace

    assert "secret-token" not in repr(replace(ctx, credential="secret-token"))
