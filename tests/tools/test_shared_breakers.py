"""Tool servers' breakers are shared by every worker, and kept apart per tenant."""

from __future__ import annotations

from dataclasses import replace

from apps.core.breakers import CircuitBreakers, RedisBreakerStore
from apps.tools.executors.base import CallContext, RetryPolicy
from apps.tools.executors.wrapper import GuardedExecutor
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
