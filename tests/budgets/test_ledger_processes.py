"""Many OS processes, one Redis: no cap is ever overspent, no rate window over-admits, and
nothing stays reserved. The processes run the framework-free ledger (reserver.py), like
workers on other machines would."""

from __future__ import annotations

from typing import Any

import redis

from apps.budgets.ledger.redis_ledger import RedisLedger
from apps.budgets.ledger.types import CounterState
from tests.budgets import processes
from tests.budgets.conftest import cap, loaded_counter, reserve_now


def _plan(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "threads": 10,
        "per_thread": 2,
        "caps": [],
        "windows": [],
        "tokens": 100,
        "micros": 0,
        "mode": "hold",
        **fields,
    }


def test_two_processes_never_hold_more_than_the_cap(
    redis_client: redis.Redis, bare_ledger: RedisLedger, prefix: str
) -> None:
    """40 reservations of 100 tokens and 0.25 money race for a cap of 1000 tokens and 2.50:
    exactly 10 get through, whichever process they came from."""
    tenant = loaded_counter(bare_ledger, "tenant", "t1")
    agent = loaded_counter(bare_ledger, "agent", "a1")
    caps = [[tenant.key, 1000, None], [agent.key, None, 2_500_000]]
    reports = processes.run(
        redis_client,
        prefix,
        [_plan(name, caps=caps, micros=250_000) for name in ("p1", "p2")],
    )
    ok = sum(r["results"].get("ok", 0) for r in reports)
    over = sum(r["results"].get("over", 0) for r in reports)
    assert (ok, over) == (10, 30)
    states = bare_ledger.states([tenant, agent])
    assert states[tenant.key] == CounterState(0, 0, 1000, 250_000 * 10)
    assert states[agent.key] == CounterState(0, 0, 1000, 2_500_000)
    assert bare_ledger.open_count() == 10


def test_reserve_settle_cycles_across_processes_spend_at_most_the_cap_and_leave_nothing_held(
    redis_client: redis.Redis, bare_ledger: RedisLedger, prefix: str
) -> None:
    """Each call holds 100 and uses 60: reservations come and go in both processes; the spend
    never passes 1000, and what Redis counts is what the processes settled."""
    tenant = loaded_counter(bare_ledger)
    caps = [[tenant.key, 1000, None]]
    plan = {"caps": caps, "mode": "cycle", "actual": [60, 0], "threads": 8, "per_thread": 5}
    reports = processes.run(redis_client, prefix, [_plan("p1", **plan), _plan("p2", **plan)])
    settled = sum(r["settled_tokens"] for r in reports)
    state = bare_ledger.states([tenant])[tenant.key]
    assert state == CounterState(settled, 0, 0, 0)
    assert 600 <= settled <= 1000
    assert bare_ledger.open_count() == 0
    # What is left is exactly the cap minus the spend.
    room = [cap(tenant, tokens=1000)]
    left = 1000 - settled
    assert reserve_now(bare_ledger, "over", room, left + 1).kind == "over"
    assert reserve_now(bare_ledger, "fits", room, left).kind == "ok"


def test_a_rate_limit_holds_across_two_processes(
    redis_client: redis.Redis, bare_ledger: RedisLedger, prefix: str
) -> None:
    """rpm = 10 for the tenant; two processes make 20 calls each at once: exactly 10 run."""
    window = [f"{prefix}:rate:t1:rpm", "rpm", 10]
    reports = processes.run(
        redis_client,
        prefix,
        [
            _plan(name, windows=[window], mode="cycle", actual=[5, 0], threads=5, per_thread=4)
            for name in ("p1", "p2")
        ],
    )
    ok = sum(r["results"].get("ok", 0) for r in reports)
    rate = sum(r["results"].get("rate", 0) for r in reports)
    assert (ok, rate) == (10, 30)
    assert int(redis_client.hget(window[0], "used") or 0) == 10
    assert 0 < redis_client.pttl(window[0]) <= 60_000


def test_settle_and_next_reserve_in_one_step_across_processes_never_overspend(
    redis_client: redis.Redis, bare_ledger: RedisLedger, prefix: str
) -> None:
    """Turns as a worker runs them: each call's settle goes in its turn's next reserve
    (SETTLE_RESERVE). 16 chains of 5 calls in two processes, each holding 100 tokens and
    0.10 and using 60 and 0.04, race for 1000 tokens and 1.00. The spend never passes the
    caps; a refused reserve still settles the call before it (nothing stays held); the rpm
    window counts the calls that ran and the tpm window ends at what they used."""
    tenant = loaded_counter(bare_ledger, "tenant", "t1")
    agent = loaded_counter(bare_ledger, "agent", "a1")
    caps = [[tenant.key, 1000, None], [agent.key, None, 1_000_000]]
    # The tpm window second: the script finds it by its place among the windows.
    windows = [[f"{prefix}:rate:t1:rpm", "rpm", 10_000], [f"{prefix}:rate:t1:tpm", "tpm", 10**9]]
    plan = {
        "caps": caps,
        "windows": windows,
        "mode": "chain",
        "tokens": 100,
        "micros": 100_000,
        "actual": [60, 40_000],
        "threads": 8,
        "per_thread": 5,
    }
    reports = processes.run(redis_client, prefix, [_plan("p1", **plan), _plan("p2", **plan)])
    ok = sum(r["results"].get("ok", 0) for r in reports)
    over = sum(r["results"].get("over", 0) for r in reports)
    settled_t = sum(r["settled_tokens"] for r in reports)
    settled_c = sum(r["settled_micros"] for r in reports)
    assert ok > 10  # settles made room: more calls ran than 1000 / 100 holds at once
    assert over > 0  # and the caps still stopped the rest
    assert (settled_t, settled_c) == (60 * ok, 40_000 * ok)
    assert settled_t <= 1000 and settled_c <= 1_000_000
    states = bare_ledger.states([tenant, agent])
    assert states[tenant.key] == CounterState(settled_t, settled_c, 0, 0)
    assert states[agent.key] == CounterState(settled_t, settled_c, 0, 0)
    assert bare_ledger.open_count() == 0
    assert int(redis_client.hget(windows[0][0], "used") or 0) == ok
    assert int(redis_client.hget(windows[1][0], "used") or 0) == settled_t
