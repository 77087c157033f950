"""Reserve → settle in one process, against the real Redis and the real Postgres ledger."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test import override_settings

from apps.budgets.exceptions import BudgetExhausted, BudgetUnavailable
from apps.budgets.ledger.redis_ledger import RedisLedger
from apps.budgets.ledger.types import (
    BuiltinCap,
    Cap,
    CounterState,
    UsageRow,
    counter_for,
    to_micros,
)
from apps.budgets.models import Budget, Period, Scope, UsageRecord
from apps.budgets.services import ledger as svc
from tests.budgets.conftest import cap, loaded_counter, reserve_now
from tests.conftest import World


def test_a_hold_is_taken_in_every_scope_or_in_none(bare_ledger: RedisLedger) -> None:
    tenant = loaded_counter(bare_ledger, "tenant", "t1")
    session = loaded_counter(bare_ledger, "session", "s1", period="session")
    caps = [cap(tenant, tokens=1000), cap(session, tokens=250)]

    first = reserve_now(bare_ledger, "a", caps, 200)
    assert first.kind == "ok"
    assert first.states[session.key] == CounterState(0, 0, 200, 0)
    # The session has 50 left: refused there, and the tenant holds nothing more either.
    second = reserve_now(bare_ledger, "b", caps, 100)
    assert second.kind == "over"
    assert second.cap is not None and second.cap.counter.key == session.key
    states = bare_ledger.states([tenant, session])
    assert states[tenant.key] == CounterState(0, 0, 200, 0)
    assert bare_ledger.open_count() == 1


def test_settle_replaces_the_hold_by_the_truth_once(bare_ledger: RedisLedger) -> None:
    tenant = loaded_counter(bare_ledger)
    caps = [cap(tenant, tokens=1000, micros=5_000_000)]
    assert reserve_now(bare_ledger, "a", caps, 400, 2_000_000).kind == "ok"

    outcome = bare_ledger.settle(
        reservation_id="a", caps=caps, windows=[], tokens=150, micros=700_000
    )
    assert outcome.previous == "open"
    assert outcome.states[tenant.key] == CounterState(150, 700_000, 0, 0)
    again = bare_ledger.settle(
        reservation_id="a", caps=caps, windows=[], tokens=150, micros=700_000
    )
    assert again.previous == "dup"
    assert bare_ledger.states([tenant])[tenant.key] == CounterState(150, 700_000, 0, 0)
    assert bare_ledger.open_count() == 0
    # The same id can't hold again: a retried reserve is not a second call.
    assert reserve_now(bare_ledger, "a", caps, 1).kind == "dup"


def test_a_failed_call_settles_at_zero_and_releases_everything(bare_ledger: RedisLedger) -> None:
    tenant = loaded_counter(bare_ledger)
    caps = [cap(tenant, tokens=100)]
    assert reserve_now(bare_ledger, "a", caps, 100).kind == "ok"
    assert reserve_now(bare_ledger, "b", caps, 1).kind == "over"
    bare_ledger.settle(reservation_id="a", caps=caps, windows=[], tokens=0, micros=0)
    assert bare_ledger.states([tenant])[tenant.key] == CounterState(0, 0, 0, 0)
    assert reserve_now(bare_ledger, "b", caps, 100).kind == "ok"


def test_an_overrun_blocks_the_scope_until_it_is_back_under(bare_ledger: RedisLedger) -> None:
    tenant = loaded_counter(bare_ledger)
    caps = [cap(tenant, tokens=1000)]
    assert reserve_now(bare_ledger, "a", caps, 100).kind == "ok"
    # The provider reports ten times the bound: settled at the truth, over the cap.
    bare_ledger.settle(reservation_id="a", caps=caps, windows=[], tokens=1500, micros=0)
    assert bare_ledger.states([tenant])[tenant.key] == CounterState(1500, 0, 0, 0)
    refused = reserve_now(bare_ledger, "b", caps, 0)
    assert refused.kind == "over"
    assert refused.states[tenant.key].spent_tokens == 1500
    # A raised cap lets calls through again.
    assert reserve_now(bare_ledger, "c", [cap(tenant, tokens=2000)], 100).kind == "ok"


def test_a_counter_not_in_redis_is_reported_not_guessed(bare_ledger: RedisLedger) -> None:
    tenant = loaded_counter(bare_ledger)
    bare_ledger.client.delete(tenant.key)
    result = reserve_now(bare_ledger, "a", [cap(tenant, tokens=10)], 1)
    assert result.kind == "load" and result.counter == tenant
    assert bare_ledger.open_count() == 0


def test_negative_holds_are_refused(bare_ledger: RedisLedger) -> None:
    with pytest.raises(ValueError):
        reserve_now(bare_ledger, "a", [cap(loaded_counter(bare_ledger), tokens=10)], -1)


# --------------------------------------------------------------------------- with Django


def _caps(world: World, session_id: uuid.UUID) -> list[Cap]:
    return svc.caps_for_turn(
        tenant_id=world.tenant_a.id,
        agent_id=uuid.uuid4(),
        user_id=world.alice.id,
        session_id=session_id,
        turn_id=uuid.uuid4(),
        builtin=[BuiltinCap("session", 40_000, "agent per session")],
    )


@pytest.mark.django_db
def test_counters_load_from_the_postgres_ledger(world: World, prefix: str) -> None:
    """Redis is a cache of UsageRecord: a counter it lacks starts from the ledger's sum
    (money per row, rounded up to micro-units like every settle)."""
    session_id = uuid.uuid4()
    Budget.objects.create(
        tenant=world.tenant_a, scope=Scope.TENANT, period=Period.DAY, max_cost=Decimal("1.00")
    )
    for i, cost in enumerate([Decimal("0.2500000001"), Decimal("0.5")]):
        svc.usage_record(
            UsageRow(
                tenant_id=str(world.tenant_a.id),
                reservation_id=f"old-{i}",
                session_id=str(session_id),
                input_tokens=100,
                output_tokens=50,
                cost=cost,
            )
        )
    # Another tenant's spend and yesterday's count for nothing here.
    svc.usage_record(
        UsageRow(tenant_id=str(world.tenant_b.id), reservation_id="other", cost=Decimal(5))
    )
    svc.usage_record(
        UsageRow(
            tenant_id=str(world.tenant_a.id),
            reservation_id="yesterday",
            input_tokens=7,
            cost=Decimal(5),
        )
    )
    UsageRecord.objects.filter(reservation_id="yesterday").update(
        created_at=datetime.now(UTC) - timedelta(days=1)
    )
    caps = _caps(world, session_id)
    assert {c.counter.scope for c in caps} == {"tenant", "session"}
    result = svc.reserve(
        reservation_id="new",
        caps=caps,
        windows=[],
        tokens=10,
        micros=to_micros(Decimal("0.2")),
        deadline_s=time.time() + 60,
        meta={},
    )
    assert result.kind == "ok"
    tenant_key = next(c.counter.key for c in caps if c.counter.scope == "tenant")
    session_key = next(c.counter.key for c in caps if c.counter.scope == "session")
    assert result.states[tenant_key] == CounterState(300, 750_001, 10, 200_000)
    assert result.states[session_key].spent_tokens == 300
    # 0.750001 spent + 0.2 held: 0.25 more does not fit in 1.00.
    refused = svc.reserve(
        reservation_id="newer",
        caps=caps,
        windows=[],
        tokens=10,
        micros=to_micros(Decimal("0.25")),
        deadline_s=time.time() + 60,
        meta={},
    )
    assert refused.kind == "over" and refused.cap is not None
    assert refused.cap.counter.scope == "tenant"


@pytest.mark.django_db
def test_admission_refuses_a_spent_cap_and_names_it(world: World, prefix: str) -> None:
    session_id = uuid.uuid4()
    budget = Budget.objects.create(
        tenant=world.tenant_a, scope=Scope.SESSION, period=Period.SESSION, max_tokens=500
    )
    svc.usage_record(
        UsageRow(
            tenant_id=str(world.tenant_a.id),
            reservation_id="r1",
            session_id=str(session_id),
            input_tokens=400,
            output_tokens=100,
        )
    )
    caps = _caps(world, session_id)
    with pytest.raises(BudgetExhausted) as refused:
        svc.admission_check(caps=caps, windows=[], currency="USD")
    assert refused.value.code == "budget_exceeded"
    assert refused.value.details["scope"] == "session"
    assert refused.value.details["budget_id"] == str(budget.id)
    assert "500 of 500 tokens" in refused.value.message
    # Another session of the same tenant has all of it.
    assert svc.admission_check(caps=_caps(world, uuid.uuid4()), windows=[]) is not None


@pytest.mark.django_db
def test_budget_figures_add_what_is_held_to_what_is_spent(world: World, prefix: str) -> None:
    budget = Budget.objects.create(
        tenant=world.tenant_a, scope=Scope.TENANT, period=Period.MONTH, max_cost=Decimal("2")
    )
    svc.usage_record(
        UsageRow(tenant_id=str(world.tenant_a.id), reservation_id="r1", cost=Decimal("1"))
    )
    caps = _caps(world, uuid.uuid4())
    svc.reserve(
        reservation_id="r2",
        caps=caps,
        windows=[],
        tokens=10,
        micros=to_micros(Decimal("0.7")),
        deadline_s=time.time() + 60,
        meta={},
    )
    figures = svc.budget_figures(budget=budget)
    assert (figures.spent_cost, figures.reserved_cost) == (Decimal("1"), Decimal("0.7"))
    assert figures.state == "warning" and figures.fraction == pytest.approx(0.85)
    now = datetime.now(UTC)
    assert figures.start == now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@pytest.mark.django_db
def test_redis_down_refuses_instead_of_running_unmetered(world: World) -> None:
    caps = _caps(world, uuid.uuid4())
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        with pytest.raises(BudgetUnavailable) as down:
            svc.reserve(
                reservation_id="x",
                caps=caps,
                windows=[],
                tokens=1,
                micros=0,
                deadline_s=time.time() + 60,
                meta={},
            )
        assert down.value.code == "budget_unavailable"
        assert down.value.retry_after


# --------------------------------------------------------------------------- bad input


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 0),
        ("max_tokens", -5),
        ("max_tokens", 10**12 + 1),
        ("max_cost", Decimal(0)),
        ("max_cost", Decimal("-1")),
        ("max_cost", Decimal("0.00001")),
        ("max_cost", Decimal("1000000000.0001")),
    ],
)
def test_zero_negative_and_absurd_caps_are_refused(world: World, field: str, value: object) -> None:
    budget = Budget(tenant=world.tenant_a, scope=Scope.TENANT, period=Period.DAY, **{field: value})
    with pytest.raises(ValidationError) as invalid:
        budget.full_clean()
    assert field in invalid.value.message_dict
    # And should a writer skip validation, the database refuses the row itself.
    with pytest.raises((IntegrityError, ValidationError)), transaction.atomic():
        budget.save()
    assert not Budget.objects.exists()


@pytest.mark.django_db
def test_a_budget_without_any_cap_is_refused(world: World) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Budget.objects.create(tenant=world.tenant_a, scope=Scope.TENANT, period=Period.DAY)


@pytest.mark.django_db
def test_one_budget_per_scope_target_and_period(world: World) -> None:
    Budget.objects.create(
        tenant=world.tenant_a, scope=Scope.TENANT, period=Period.DAY, max_tokens=10
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Budget.objects.create(
            tenant=world.tenant_a, scope=Scope.TENANT, period=Period.DAY, max_cost=Decimal(1)
        )
    # Another tenant, or another period, is another budget.
    Budget.objects.create(
        tenant=world.tenant_b, scope=Scope.TENANT, period=Period.DAY, max_tokens=10
    )
    Budget.objects.create(
        tenant=world.tenant_a, scope=Scope.TENANT, period=Period.MONTH, max_tokens=10
    )
    assert UsageRecord.objects.count() == 0


@pytest.mark.django_db
def test_a_fresh_sessions_counter_starts_at_zero_without_reading_the_ledger(
    world: World, prefix: str
) -> None:
    """A caller that knows a session has made no call (its first turn) skips the ledger sum;
    any other counter is still summed."""
    fresh_session, used_session = uuid.uuid4(), uuid.uuid4()
    svc.usage_record(
        UsageRow(
            tenant_id=str(world.tenant_a.id),
            reservation_id="spent-before",
            session_id=str(used_session),
            input_tokens=900,
            cost=Decimal("0.01"),
        )
    )
    sums: list[str] = []

    def count_sums(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "SUM(" in sql and "budgets_usagerecord" in sql:
            sums.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count_sums):
        caps = _caps(world, fresh_session)
        states = svc.admission_check(caps=caps, windows=[], fresh=(str(fresh_session),))
        fresh_key = next(c.counter.key for c in caps if c.counter.scope == "session")
        assert states[fresh_key].spent_tokens == 0
        assert sums == []
        sums.clear()
        caps = _caps(world, used_session)
        states = svc.admission_check(caps=caps, windows=[], fresh=(str(fresh_session),))
    used_key = next(c.counter.key for c in caps if c.counter.scope == "session")
    assert states[used_key].spent_tokens == 900 and len(sums) == 1


def test_a_fresh_counter_loads_as_zero_in_the_checking_step_and_never_resets_a_loaded_one(
    bare_ledger: RedisLedger,
) -> None:
    """The script zeroes a missing counter the caller marks fresh (one round trip instead of
    load + check); a missing counter not marked fresh still asks to be loaded from the
    ledger; and `fresh` on a counter already there changes nothing in it."""
    at = datetime.now(UTC)
    new, other = (
        counter_for(
            prefix=bare_ledger.prefix,
            tenant_id="t1",
            scope="session",
            target=t,
            period="session",
            at=at,
        )
        for t in ("s-new", "s-other")
    )
    caps = [cap(new, tokens=1000)]
    peeked = bare_ledger.peek(caps=caps, windows=[], fresh=[new.key])
    assert (peeked.kind, peeked.states[new.key]) == ("ok", CounterState(0, 0, 0, 0))
    assert bare_ledger.states([new])[new.key] == CounterState(0, 0, 0, 0)
    assert 0 < bare_ledger.client.ttl(new.key) <= new.ttl_s

    missing = bare_ledger.peek(caps=[cap(other, tokens=1000)], windows=[])
    assert (missing.kind, missing.counter) == ("load", other)

    held = bare_ledger.reserve(
        reservation_id="r1",
        caps=caps,
        windows=[],
        tokens=400,
        micros=0,
        deadline_s=time.time() + 60,
        meta={},
        fresh=[new.key],
    )
    assert held.kind == "ok"
    again = bare_ledger.reserve(
        reservation_id="r2",
        caps=caps,
        windows=[],
        tokens=700,
        micros=0,
        deadline_s=time.time() + 60,
        meta={},
        fresh=[new.key],
    )
    assert again.kind == "over"  # the 400 held before still counts: nothing was reset
    assert bare_ledger.states([new])[new.key] == CounterState(0, 0, 400, 0)
