"""Routers in different processes share each endpoint's breaker through Redis.

Each router here has its own providers and its own memory, as two worker processes would;
only the breaker store (the test Redis) is common.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from apps.core.breakers import CircuitBreakers, RedisBreakerStore
from apps.llm.providers import build_provider
from apps.llm.router import AllEndpointsFailed, ModelRouter
from tests.breakers import WallClock
from tests.llm.servers import FakeModelServer, completion, error, reply
from tests.llm.test_router import REQUEST, compat


def worker_router(
    store: RedisBreakerStore, clock: WallClock, primary: FakeModelServer, backup: FakeModelServer
) -> ModelRouter:
    return ModelRouter(
        [compat("primary", primary.url), compat("backup", backup.url)],
        build_provider,
        breakers=CircuitBreakers(store, fail_max=2, reset_timeout_s=30, clock=clock),
        breaker_keys={"primary": "llm:primary-id", "backup": "llm:backup-id"},
    )


def ask(router: ModelRouter) -> str:
    return router.complete(REQUEST, tier="small", sensitivity="internal").endpoint


def test_failures_seen_by_one_worker_open_the_breaker_for_another(
    make_server: Callable[..., FakeModelServer],
    shared_store: RedisBreakerStore,
    wall_clock: WallClock,
) -> None:
    primary = make_server(error(503), error(503), default=reply(completion("primary back")))
    backup = make_server(default=reply(completion("backup")))
    one = worker_router(shared_store, wall_clock, primary, backup)
    two = worker_router(shared_store, wall_clock, primary, backup)

    assert [ask(one), ask(one)] == ["backup", "backup"]
    assert one.breaker_state("primary") == two.breaker_state("primary") == "open"

    # The second worker never saw the primary fail, yet does not call it.
    assert ask(two) == "backup"
    assert len(primary.received) == 2

    # After the reset timeout one trial call, from whichever worker asks first, closes it
    # for both.
    wall_clock.advance(30)
    assert two.breaker_state("primary") == "half-open"
    assert ask(two) == "primary"
    assert one.breaker_state("primary") == "closed"
    assert ask(one) == "primary"
    assert len(primary.received) == 4


def test_a_failed_trial_reopens_it_for_every_worker(
    make_server: Callable[..., FakeModelServer],
    shared_store: RedisBreakerStore,
    wall_clock: WallClock,
) -> None:
    primary = make_server(default=error(503))
    backup = make_server(default=reply(completion("backup")))
    one = worker_router(shared_store, wall_clock, primary, backup)
    two = worker_router(shared_store, wall_clock, primary, backup)
    ask(one), ask(one)

    wall_clock.advance(30)
    assert ask(two) == "backup"  # the trial failed over
    assert len(primary.received) == 3
    assert one.breaker_state("primary") == "open"
    assert ask(one) == "backup"
    assert len(primary.received) == 3


def test_endpoints_of_the_same_name_in_other_tenants_are_not_affected(
    make_server: Callable[..., FakeModelServer],
    shared_store: RedisBreakerStore,
    wall_clock: WallClock,
) -> None:
    down = make_server(default=error(503))
    up = make_server(default=reply(completion("fine")))
    tenant_a = ModelRouter(
        [compat("gpt", down.url)],
        build_provider,
        breakers=CircuitBreakers(shared_store, fail_max=1, reset_timeout_s=30, clock=wall_clock),
        breaker_keys={"gpt": "llm:a-endpoint-id"},
    )
    tenant_b = ModelRouter(
        [compat("gpt", up.url)],
        build_provider,
        breakers=CircuitBreakers(shared_store, fail_max=1, reset_timeout_s=30, clock=wall_clock),
        breaker_keys={"gpt": "llm:b-endpoint-id"},
    )
    with pytest.raises(AllEndpointsFailed):
        ask(tenant_a)
    assert tenant_a.breaker_state("gpt") == "open"
    assert tenant_b.breaker_state("gpt") == "closed" and ask(tenant_b) == "gpt"
