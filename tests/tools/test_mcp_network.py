"""MCP over streamable HTTP, SSE and websocket against a real server in a subprocess."""

from dataclasses import replace

import pytest

from apps.tools.executors.base import RetryPolicy, ToolUnavailable
from apps.tools.executors.mcp import McpExecutor, discover, tool_definition
from apps.tools.executors.wrapper import CircuitBreakers, GuardedExecutor, breaker_key

from .conftest import start_server


def setup(server, pool, sleeps, breakers=None, **settings):
    config = server.config(**settings)
    tools = {entry["name"]: entry for entry in discover(config, pool=pool)}
    executor = GuardedExecutor(
        {"mcp": McpExecutor({config.key: config}, pool=pool)}, sleep=sleeps, breakers=breakers
    )
    return config, tools, executor


@pytest.mark.parametrize("transport", ["streamable-http", "sse", "websocket"])
def test_discovery_calls_and_per_call_credentials(
    transport, http_server, server_factory, pool, ctx, sleeps
):
    server = http_server if transport == "streamable-http" else server_factory(transport)
    _, tools, executor = setup(server, pool, sleeps, credential_header="X-Warden-Credential")
    assert {"add", "whoami", "fail", "huge", "slow", "die"} <= set(tools)
    assert tools["add"]["input_schema"]["required"] == ["a", "b"]

    added = executor.execute(tool_definition(tools["add"]), {"a": 2, "b": 40}, ctx=ctx)
    assert added.ok and added.content == {"result": 42}

    whoami = tool_definition(tools["whoami"])
    alice = executor.execute(whoami, {}, ctx=replace(ctx, credential="token-alice"))
    bob = executor.execute(whoami, {}, ctx=replace(ctx, credential="token-bob"))
    anonymous = executor.execute(whoami, {}, ctx=ctx)
    assert alice.content["header"] == "token-alice"
    assert bob.content["header"] == "token-bob"
    assert anonymous.content["header"] is None


def test_flaky_server_succeeds_after_retries_with_growing_delays(http_server, pool, ctx, sleeps):
    _, tools, executor = setup(http_server, pool, sleeps)
    http_server.admin("fail", tool="add", count=2, status=503)
    definition = tool_definition(
        tools["add"], idempotent=True, retry=RetryPolicy(max_attempts=4, base_delay_s=0.2)
    )
    outcome = executor.execute(definition, {"a": 1, "b": 2}, ctx=ctx)
    assert outcome.ok and outcome.content == {"result": 3}
    assert outcome.attempts == 3 and http_server.calls()["add"] == 3
    first, second = sleeps.delays
    assert 0.1 <= first <= 0.2 < second <= 0.4


def test_gateway_error_on_a_non_idempotent_tool_is_not_retried(http_server, pool, ctx, sleeps):
    _, tools, executor = setup(http_server, pool, sleeps)
    http_server.admin("fail", tool="add", count=1, status=502)
    outcome = executor.execute(
        tool_definition(tools["add"], idempotent=False), {"a": 1, "b": 2}, ctx=ctx
    )
    assert (outcome.error_code, outcome.attempts) == ("http_502", 1)
    assert http_server.calls()["add"] == 1


def test_tool_error_is_reported_and_not_retried(http_server, pool, ctx, sleeps):
    _, tools, executor = setup(http_server, pool, sleeps)
    definition = tool_definition(tools["fail"], idempotent=True)
    outcome = executor.execute(definition, {"message": "disk quota exceeded"}, ctx=ctx)
    assert (outcome.ok, outcome.error_code, outcome.attempts) == (False, "tool_error", 1)
    assert "disk quota exceeded" in outcome.model_text
    assert http_server.calls()["fail"] == 1 and sleeps.delays == []


def test_breaker_opens_on_a_down_server_and_closes_when_it_recovers(http_server, pool, ctx, sleeps):
    now = [1000.0]
    breakers = CircuitBreakers(fail_max=2, reset_timeout_s=3600, clock=lambda: now[0])
    _config, tools, executor = setup(http_server, pool, sleeps, breakers=breakers)
    add = tool_definition(tools["add"], idempotent=True, retry=RetryPolicy(max_attempts=1))
    key = breaker_key(add, tenant_id=ctx.tenant_id)

    http_server.admin("down", down=True)
    assert executor.execute(add, {"a": 1, "b": 1}, ctx=ctx).error_code == "http_503"
    assert executor.execute(add, {"a": 1, "b": 1}, ctx=ctx).error_code == "http_503"
    assert breakers.state(key) == "open"
    assert executor.execute(add, {"a": 1, "b": 1}, ctx=ctx).error_code == "circuit_open"
    assert http_server.calls()["add"] == 2  # the third call never left the process

    http_server.admin("down", down=False)
    now[0] += 3600  # the reset timeout has elapsed
    recovered = executor.execute(add, {"a": 1, "b": 1}, ctx=ctx)
    assert recovered.ok and recovered.content == {"result": 2}
    assert breakers.state(key) == "closed" and http_server.calls()["add"] == 3


def test_arguments_failing_the_schema_never_reach_the_server(http_server, pool, ctx, sleeps):
    _, tools, executor = setup(http_server, pool, sleeps)
    outcome = executor.execute(tool_definition(tools["add"]), {"a": "one", "b": 2}, ctx=ctx)
    assert outcome.error_code == "arguments_invalid" and "$.a" in outcome.error_message
    assert "add" not in http_server.calls()


def test_huge_result_is_capped_for_the_model_and_kept_in_full(http_server, pool, ctx, sleeps):
    _, tools, executor = setup(http_server, pool, sleeps)
    outcome = executor.execute(tool_definition(tools["huge"]), {"size": 300_000}, ctx=ctx)
    assert outcome.ok and outcome.truncated
    assert outcome.content == {"result": "x" * 300_000}
    assert len(outcome.model_text.encode()) <= 4096 and "truncated" in outcome.model_text


def test_slow_tool_times_out(http_server, pool, ctx, sleeps):
    _, tools, executor = setup(http_server, pool, sleeps)
    definition = tool_definition(tools["slow"], idempotent=False, timeout_s=0.5)
    outcome = executor.execute(definition, {"seconds": 60}, ctx=ctx)
    assert (outcome.error_code, outcome.attempts) == ("timeout", 1)
    # The connection survives a timed-out call.
    assert executor.execute(tool_definition(tools["add"]), {"a": 1, "b": 1}, ctx=ctx).ok


def test_server_dying_mid_call_is_unavailable_and_the_next_call_reconnects(
    server_factory, pool, ctx, sleeps
):
    server = server_factory("streamable-http")
    _, tools, executor = setup(server, pool, sleeps)
    whoami = tool_definition(tools["whoami"])
    before = executor.execute(whoami, {}, ctx=ctx)

    died = executor.execute(tool_definition(tools["die"], idempotent=False), {}, ctx=ctx)
    assert (died.ok, died.error_code) == (False, "connection_lost")
    assert died.attempts == 1
    server.stop()

    # While it is down: refused connections, retried (nothing was sent) and then reported.
    down = executor.execute(
        replace(whoami, retry=RetryPolicy(max_attempts=2, base_delay_s=0.01)), {}, ctx=ctx
    )
    assert (down.error_code, down.attempts, len(sleeps.delays)) == ("connect_failed", 2, 1)

    restarted = server_factory("streamable-http", port=server.port)
    after = executor.execute(whoami, {}, ctx=ctx)
    assert after.ok, after.error_message
    assert after.content["pid"] == restarted.process.pid != before.content["pid"]


def test_unreachable_server_fails_discovery_cleanly(pool):
    server = start_server("streamable-http")
    config = server.config()
    server.stop()
    with pytest.raises(ToolUnavailable) as unavailable:
        discover(config, pool=pool)
    assert unavailable.value.code == "connect_failed"
