"""Circuit breakers over their stores: the same rules in memory and in Redis, one trial at a
time for everyone, and a Redis outage that degrades to per-process breakers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest
import redis

from apps.core.breakers import (
    Admission,
    BreakerStore,
    Circuit,
    CircuitBreakers,
    FallbackBreakerStore,
    MemoryBreakerStore,
    RedisBreakerStore,
)
from devtools.embedded import free_port
from tests.breakers import WallClock


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> BreakerStore:
    if request.param == "memory":
        return MemoryBreakerStore()
    shared: RedisBreakerStore = request.getfixturevalue("shared_store")
    return shared


def test_opens_after_fail_max_consecutive_failures(store: BreakerStore, wall_clock: WallClock):
    breakers = CircuitBreakers(store, fail_max=3, reset_timeout_s=30, clock=wall_clock)
    for outcome in (False, False, True, False, False):  # a success resets the count
        assert breakers.allow("ep")
        breakers.record("ep", ok=outcome)
    assert breakers.state("ep") == "closed"
    breakers.record("ep", ok=False)
    assert breakers.state("ep") == "open"
    assert not breakers.allow("ep")
    assert breakers.available(["ep", "other"]) == [False, True]


class _CountingStore:
    """Counts the calls that reach the real store (each one a round trip for Redis)."""

    def __init__(self, real: BreakerStore) -> None:
        self.real, self.calls = real, 0

    def get(self, keys: list[str]) -> list[Circuit]:
        self.calls += 1
        return self.real.get(keys)

    def allow(self, key: str, *, now: float, reset_timeout_s: float) -> Admission:
        self.calls += 1
        return self.real.allow(key, now=now, reset_timeout_s=reset_timeout_s)

    def record(self, key: str, *, ok: bool, now: float, fail_max: int):
        self.calls += 1
        return self.real.record(key, ok=ok, now=now, fail_max=fail_max)


def test_a_healthy_call_costs_one_store_call_and_failures_still_count(
    store: BreakerStore, wall_clock: WallClock
):
    counting = _CountingStore(store)
    breakers = CircuitBreakers(counting, fail_max=2, reset_timeout_s=30, clock=wall_clock)
    admission = breakers.allow("ep")
    assert admission is Admission.PRISTINE
    breakers.record("ep", ok=True, admission=admission)
    assert counting.calls == 1  # the success of a pristine call has nothing to reset

    (seen,) = breakers.circuits(["ep"])  # the router reads first, then admits from that
    assert breakers.allow("ep", seen=seen) is Admission.PRISTINE
    assert counting.calls == 2

    breakers.record("ep", ok=False, admission=breakers.allow("ep"))
    assert breakers.allow("ep") is Admission.ALLOWED  # one failure recorded: not pristine
    (seen,) = breakers.circuits(["ep"])
    assert breakers.allow("ep", seen=seen) is Admission.ALLOWED  # asks the store again
    breakers.record("ep", ok=False, admission=Admission.ALLOWED)
    assert not breakers.allow("ep")  # fail_max reached: open for everyone
    assert breakers.state("ep") == "open"


def test_one_trial_after_the_timeout_then_closed_for_all(store: BreakerStore, wall_clock):
    breakers = CircuitBreakers(store, fail_max=1, reset_timeout_s=30, clock=wall_clock)
    breakers.record("ep", ok=False)
    wall_clock.advance(29)
    assert not breakers.allow("ep")
    wall_clock.advance(1)
    assert breakers.state("ep") == "half-open"

    # Many callers at once: exactly one gets the trial call.
    granted: list[bool] = []
    start = threading.Barrier(8)

    def caller() -> None:
        start.wait()
        granted.append(breakers.allow("ep"))

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(granted) == [False] * 7 + [True]

    breakers.record("ep", ok=True)
    assert breakers.state("ep") == "closed"
    assert all(breakers.allow("ep") for _ in range(3))


def test_failed_trial_reopens_for_a_whole_timeout(store: BreakerStore, wall_clock: WallClock):
    breakers = CircuitBreakers(store, fail_max=1, reset_timeout_s=30, clock=wall_clock)
    breakers.record("ep", ok=False)
    wall_clock.advance(30)
    assert breakers.allow("ep")
    breakers.record("ep", ok=False)
    assert breakers.state("ep") == "open"
    wall_clock.advance(29)
    assert not breakers.allow("ep")
    wall_clock.advance(1)
    assert breakers.allow("ep")


def test_a_trial_whose_caller_died_is_given_to_someone_else(store, wall_clock: WallClock):
    breakers = CircuitBreakers(store, fail_max=1, reset_timeout_s=30, clock=wall_clock)
    breakers.record("ep", ok=False)
    wall_clock.advance(30)
    assert breakers.allow("ep")  # ...and this caller never reports back
    wall_clock.advance(29)
    assert not breakers.allow("ep")
    wall_clock.advance(1)
    assert breakers.allow("ep")


def test_redis_keys_are_namespaced_and_a_healthy_breaker_leaves_none(
    shared_store: RedisBreakerStore, redis_client: redis.Redis, wall_clock: WallClock
):
    breakers = CircuitBreakers(shared_store, fail_max=1, reset_timeout_s=30, clock=wall_clock)
    breakers.record("llm:one", ok=False)
    prefix = shared_store._prefix
    assert [k.decode() for k in redis_client.scan_iter(f"{prefix}:*")] == [f"{prefix}:llm:one"]
    assert redis_client.ttl(f"{prefix}:llm:one") > 0
    wall_clock.advance(30)
    assert breakers.allow("llm:one")
    breakers.record("llm:one", ok=True)
    assert list(redis_client.scan_iter(f"{prefix}:*")) == []


def unreachable_redis() -> RedisBreakerStore:
    # A port nobody listens on: every command fails with ConnectionError, at once.
    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    return RedisBreakerStore(client, prefix="test:breaker:down")


def test_redis_down_degrades_to_per_process_breakers_with_a_warning(
    wall_clock: WallClock, caplog: pytest.LogCaptureFixture
):
    monotonic = WallClock(0.0)
    store = FallbackBreakerStore(unreachable_redis(), retry_after_s=5, monotonic=monotonic)
    breakers = CircuitBreakers(store, fail_max=2, reset_timeout_s=30, clock=wall_clock)

    with caplog.at_level(logging.WARNING, logger="warden.breakers"):
        # Calls are not refused because the breakers' storage is down...
        assert breakers.allow("ep") and breakers.state("ep") == "closed"
        # ...and failures still open this process's breaker: a dead endpoint is not called
        # forever.
        breakers.record("ep", ok=False)
        breakers.record("ep", ok=False)
        assert breakers.state("ep") == "open"
        assert not breakers.allow("ep")
        wall_clock.advance(30)
        assert breakers.allow("ep")
        breakers.record("ep", ok=True)
        assert breakers.state("ep") == "closed"

    unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(unreachable) == 1  # once per outage, not once per call
    assert store.degraded


class _Flaky:
    """Redis that is down until `up` is set, then the real test Redis."""

    def __init__(self, real: BreakerStore) -> None:
        self.real, self.up = real, False

    def _guard(self, operation: Callable[[], object]) -> object:
        if not self.up:
            raise redis.ConnectionError("connection refused")
        return operation()

    def get(self, keys):
        return self._guard(lambda: self.real.get(keys))

    def allow(self, key, *, now, reset_timeout_s):
        return self._guard(lambda: self.real.allow(key, now=now, reset_timeout_s=reset_timeout_s))

    def record(self, key, *, ok, now, fail_max):
        return self._guard(lambda: self.real.record(key, ok=ok, now=now, fail_max=fail_max))


def test_shared_state_takes_over_again_when_redis_is_back(
    shared_store: RedisBreakerStore, wall_clock: WallClock
):
    monotonic = WallClock(0.0)
    flaky = _Flaky(shared_store)
    store = FallbackBreakerStore(flaky, retry_after_s=5, monotonic=monotonic)  # type: ignore[arg-type]
    mine = CircuitBreakers(store, fail_max=1, reset_timeout_s=30, clock=wall_clock)
    others = CircuitBreakers(shared_store, fail_max=1, reset_timeout_s=30, clock=wall_clock)

    mine.record("ep", ok=False)  # while Redis is down: only this process knows
    assert mine.state("ep") == "open" and others.state("ep") == "closed"

    flaky.up = True
    others.record("other", ok=False)
    assert mine.state("other") == "closed"  # not retried before retry_after_s
    monotonic.advance(5)
    assert mine.state("other") == "open" and not store.degraded
