"""Tool servers' breakers are shared by every worker, and kept apart per tenant."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from apps.core.breakers import Circuit, CircuitBreakers, RedisBreakerStore
from apps.tools.executors.base import CallContext, RetryPolicy, ToolUnavailable
from apps.tools.executors.builtin import BuiltinExecutor, BuiltinRegistry
from apps.tools.executors.wrapper import GuardedExecutor, breaker_key
from tests.breakers import WallClock
from tests.tools.test_wrapper import Scripted, tool, unavailable


def worker(store: RedisBreakerStore, clock: WallClock, executor: Scripted) -> GuardedExecutor:
    breakers = CircuitBreakers(store, fail_max=2, reset_timeout_s=30, clock=clock)
    return GuardedExecutor({"builtin": executor}, breakers=breakers, sleep=lambda s: None)


def test_a_server_down_for_one_worker_is_not_called_by_another(
    shared_store: RedisBreakerStore, wall_clock: WallClock, ctx: CallContext
) -> None:
    once = tool(retry=RetryPolicy(max_attempts=1))
    failing = Scripted(unavailable(), unavailable())
    healthy = Scripted()
    one, two = worker(shared_store, wall_clock, failing), worker(shared_store, wall_clock, healthy)

    assert one.execute(once, {"a": 1, "b": 1}, ctx=ctx).error_code == "http_503"
    assert one.execute(once, {"a": 1, "b": 1}, ctx=ctx).error_code == "http_503"
    assert two.execute(once, {"a": 1, "b": 1}, ctx=ctx).error_code == "circuit_open"
    assert healthy.calls == []

    # Another tenant's use of the same (builtin) server is not affected.
    other_tenant = replace(ctx, tenant_id="tenant-b")
    assert two.execute(once, {"a": 1, "b": 1}, ctx=other_tenant).content == 2

    # One trial after the timeout, from the other worker, closes it for both.
    wall_clock.advance(30)
    assert two.execute(once, {"a": 2, "b": 2}, ctx=ctx).content == 4
    assert one.execute(once, {"a": 3, "b": 3}, ctx=ctx).content == 6


def test_an_in_process_builtin_skips_the_shared_breaker_and_other_builtins_keep_it(
    shared_store: RedisBreakerStore, wall_clock: WallClock, ctx: CallContext
) -> None:
    """A builtin that reaches nothing outside its worker has no breaker to consult (no Redis
    step per call): its failures open nothing. One that does (I/O) still trips its breaker."""
    registry = BuiltinRegistry()
    calls: list[str] = []

    def failing(name: str) -> Any:
        def run(arguments: Any, call: Any) -> Any:
            calls.append(name)
            raise ToolUnavailable(f"{name} is down", maybe_executed=False)

        return run

    schema = {"type": "object", "additionalProperties": False}
    registry.register(
        "local", failing("local"), description="", input_schema=schema, in_process=True
    )
    registry.register("remote", failing("remote"), description="", input_schema=schema)
    builtins = BuiltinExecutor(registry, max_workers=2, cpu_helpers=1)
    try:
        guarded = GuardedExecutor(
            {"builtin": builtins},
            breakers=CircuitBreakers(
                shared_store, fail_max=2, reset_timeout_s=30, clock=wall_clock
            ),
            sleep=lambda s: None,
        )
        once = RetryPolicy(max_attempts=1)
        local = replace(registry.get("local").definition(), retry=once)
        remote = replace(registry.get("remote").definition(), retry=once)
        assert builtins.breaker_exempt(local) and not builtins.breaker_exempt(remote)

        for _ in range(4):
            assert guarded.execute(local, {}, ctx=ctx).error_code == "unavailable"
        assert calls == ["local"] * 4
        assert shared_store.get([breaker_key(local, tenant_id=ctx.tenant_id)]) == [Circuit()]

        codes = [guarded.execute(remote, {}, ctx=ctx).error_code for _ in range(3)]
        assert codes[2] == "circuit_open" and calls.count("remote") == 2
    finally:
        builtins.shutdown()
