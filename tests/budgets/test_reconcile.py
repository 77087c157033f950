"""A worker that dies between reserve and settle: its hold expires, is charged once in the
ledger and released from Redis, and a late settle still ends at the truth."""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
import redis
from django.conf import settings

from apps.budgets import tasks
from apps.budgets.ledger.types import BuiltinCap, Cap, CounterState, UsageRow, to_micros
from apps.budgets.models import UsageKind, UsageRecord
from apps.budgets.services import ledger as svc
from tests.budgets import processes
from tests.conftest import World

pytestmark = pytest.mark.django_db

HOLD_COST = Decimal("0.0421")


def _setup(world: World) -> tuple[list[Cap], dict[str, Any]]:
    session_id, turn_id = uuid.uuid4(), uuid.uuid4()
    caps = svc.caps_for_turn(
        tenant_id=world.tenant_a.id,
        agent_id=uuid.uuid4(),
        user_id=world.alice.id,
        session_id=session_id,
        turn_id=turn_id,
        builtin=[
            BuiltinCap("turn", 10_000, "agent per turn"),
            BuiltinCap("session", 40_000, "agent per session"),
        ],
    )
    meta = {
        "tenant_id": str(world.tenant_a.id),
        "turn_id": str(turn_id),
        "session_id": str(session_id),
        "user_id": world.alice.id,
        "node_id": "step-1.model",
        "currency": "USD",
        "cost": str(HOLD_COST),
    }
    return caps, meta


def _session_state(caps: list[Cap]) -> CounterState | None:
    session = next(c.counter for c in caps if c.counter.scope == "session")
    return svc.ledger().states([session])[session.key]


def test_an_expired_hold_is_charged_once_and_a_late_settle_corrects_it(
    world: World, prefix: str
) -> None:
    caps, meta = _setup(world)
    now = time.time()
    deadline = now + 90
    result = svc.reserve(
        reservation_id="step-1.model@1",
        caps=caps,
        windows=[],
        tokens=2500,
        micros=to_micros(HOLD_COST),
        deadline_s=deadline,
        meta=meta,
    )
    assert result.kind == "ok"
    # Before its deadline a hold is a live call's: left alone.
    assert svc.reservations_reconcile(now_s=deadline - 1) == 0
    assert _session_state(caps) == CounterState(0, 0, 2500, 42_100)

    assert svc.reservations_reconcile(now_s=deadline + 1) == 1
    row = UsageRecord.objects.get()
    assert (row.kind, row.reservation_id, row.estimated) == (
        UsageKind.EXPIRED_RESERVATION,
        "step-1.model@1",
        True,
    )
    assert (row.input_tokens, row.cost, row.reserved_tokens) == (2500, HOLD_COST, 2500)
    assert (row.tenant_id, row.user_id, str(row.session_id)) == (
        world.tenant_a.id,
        world.alice.id,
        meta["session_id"],
    )
    assert _session_state(caps) == CounterState(2500, 42_100, 0, 0)
    assert svc.ledger().open_count() == 0
    # Reconciling again charges nothing twice.
    assert svc.reservations_reconcile(now_s=deadline + 3600) == 0
    assert UsageRecord.objects.count() == 1
    assert _session_state(caps) == CounterState(2500, 42_100, 0, 0)

    # The call was alive after all: its settle replaces the charge with the truth.
    actual_cost = Decimal("0.0100")
    svc.usage_record(
        UsageRow(
            tenant_id=meta["tenant_id"],
            reservation_id="step-1.model@1",
            session_id=meta["session_id"],
            turn_id=meta["turn_id"],
            input_tokens=700,
            output_tokens=300,
            cost=actual_cost,
            reserved_tokens=2500,
            reserved_cost=HOLD_COST,
        )
    )
    svc.settle(
        reservation_id="step-1.model@1",
        caps=caps,
        windows=[],
        tokens=1000,
        micros=to_micros(actual_cost),
    )
    row = UsageRecord.objects.get()
    assert (row.kind, row.input_tokens + row.output_tokens, row.cost) == ("call", 1000, actual_cost)
    assert _session_state(caps) == CounterState(1000, 10_000, 0, 0)
    # And Redis agrees with the ledger a reload would give.
    session = next(c.counter for c in caps if c.counter.scope == "session")
    assert svc.ledger_sums(session)[:2] == (1000, 10_000)


def test_a_killed_process_leaves_a_hold_that_expires_and_is_charged(
    world: World, prefix: str, redis_client: redis.Redis
) -> None:
    """A real process reserves and is killed -9 before it settles: the hold stays open in
    Redis, then the reconciler charges it once and nothing stays reserved."""
    caps, meta = _setup(world)
    # The service loads the counters from the (empty) ledger, as a worker would have.
    assert svc.peek(caps=caps, windows=[]).kind == "ok"
    plan = {
        "name": "dying",
        "threads": 1,
        "per_thread": 1,
        "caps": [[c.counter.key, c.max_tokens, c.max_micros] for c in caps],
        "windows": [],
        "tokens": 3000,
        "micros": to_micros(HOLD_COST),
        "mode": "hang",
        "deadline_s": 30,
        "meta": meta,
    }
    proc = processes.start(prefix, plan)
    try:
        processes.release(redis_client, prefix, 1)
        assert proc.stdout is not None
        held = json.loads(proc.stdout.readline())["held"]
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert svc.ledger().open_count() == 1
    assert _session_state(caps) == CounterState(0, 0, 3000, 42_100)

    later = time.time() + 3600
    assert svc.reservations_reconcile(now_s=later) == 1
    assert svc.reservations_reconcile(now_s=later) == 0
    row = UsageRecord.objects.get()
    assert (row.reservation_id, row.kind, row.input_tokens) == (held, "expired_reservation", 3000)
    assert svc.ledger().open_count() == 0
    for key, state in svc.ledger().states([c.counter for c in caps]).items():
        assert state is not None
        assert (state.reserved_tokens, state.reserved_micros) == (0, 0), key
        assert (state.spent_tokens, state.spent_micros) == (3000, 42_100), key


def test_the_beat_task_reconciles(world: World, prefix: str) -> None:
    assert settings.CELERY_BEAT_SCHEDULE["reconcile-budgets"] == {
        "task": "budgets.reconcile",
        "schedule": 30.0,
    }
    caps, meta = _setup(world)
    svc.reserve(
        reservation_id="r@1",
        caps=caps,
        windows=[],
        tokens=10,
        micros=0,
        deadline_s=time.time() - 1,
        meta=meta,
    )
    assert tasks.reconcile.apply().get() == 1
    assert UsageRecord.objects.filter(kind="expired_reservation").count() == 1


def test_a_due_hold_whose_call_has_its_ledger_row_is_settled_at_the_row_not_charged(
    world: World, prefix: str
) -> None:
    """The worker committed the call's row, then died (or its Redis settle waits for the
    turn's next call past the hold's deadline): the reconciler settles at the row's truth,
    writes no second row, and a settle arriving afterwards changes nothing."""
    caps, meta = _setup(world)
    deadline = time.time() + 90
    rid = "step-1.model@1"
    assert (
        svc.reserve(
            reservation_id=rid,
            caps=caps,
            windows=[],
            tokens=2500,
            micros=to_micros(HOLD_COST),
            deadline_s=deadline,
            meta=meta,
        ).kind
        == "ok"
    )
    actual_cost = Decimal("0.0100")
    svc.usage_record(
        UsageRow(
            tenant_id=meta["tenant_id"],
            reservation_id=rid,
            session_id=meta["session_id"],
            turn_id=meta["turn_id"],
            input_tokens=700,
            output_tokens=300,
            cost=actual_cost,
            reserved_tokens=2500,
            reserved_cost=HOLD_COST,
        )
    )
    assert svc.reservations_reconcile(now_s=deadline + 1) == 0  # nothing charged
    row = UsageRecord.objects.get()
    assert (row.kind, row.input_tokens + row.output_tokens) == (UsageKind.CALL, 1000)
    assert _session_state(caps) == CounterState(1000, 10_000, 0, 0)
    assert svc.ledger().open_count() == 0
    assert svc.ledger().stats().get("settled_late") == 1
    assert "expired" not in svc.ledger().stats()
    # The worker's own settle, late: already settled, nothing counted twice.
    svc.settle(reservation_id=rid, caps=caps, windows=[], tokens=1000, micros=10_000)
    assert _session_state(caps) == CounterState(1000, 10_000, 0, 0)
    session = next(c.counter for c in caps if c.counter.scope == "session")
    assert svc.ledger_sums(session)[:2] == (1000, 10_000)
