"""Budgets against the suite's real Redis and Postgres: each test gets its own key prefix."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from apps.budgets.ledger.redis_ledger import RedisLedger
from apps.budgets.ledger.types import Cap, Counter, ReserveResult, counter_for


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own, in settings too; its keys are gone afterwards."""
    own = f"{settings.WARDEN_BUDGET_REDIS_PREFIX}:{uuid.uuid4().hex[:12]}"
    with override_settings(WARDEN_BUDGET_REDIS_PREFIX=own):
        yield own
    keys = list(redis_client.scan_iter(f"{own}:*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def bare_ledger(redis_client: redis.Redis, prefix: str) -> RedisLedger:
    """The framework-free ledger on the suite's Redis."""
    return RedisLedger(redis_client, prefix=prefix)


def loaded_counter(
    led: RedisLedger, scope: str = "tenant", target: str = "t1", *, period: str = "day"
) -> Counter:
    """A counter with nothing spent, as if loaded from an empty ledger."""
    counter = counter_for(
        prefix=led.prefix,
        tenant_id="t1",
        scope=scope,
        target=target,
        period=period,
        at=datetime.now(UTC),
    )
    led.load(counter, 0, 0)
    return counter


def cap(
    counter: Counter, *, tokens: int | None = None, micros: int | None = None, label: str = ""
) -> Cap:
    return Cap(
        counter=counter,
        budget_id=None,
        period="day",
        max_tokens=tokens,
        max_micros=micros,
        label=label or f"{counter.scope} cap",
    )


def reserve_now(
    led: RedisLedger, rid: str, caps: list[Cap], tokens: int, micros: int = 0
) -> ReserveResult:
    return led.reserve(
        reservation_id=rid,
        caps=caps,
        windows=[],
        tokens=tokens,
        micros=micros,
        deadline_s=time.time() + 60,
        meta={},
    )


def usage_row(tenant: Any, **fields: Any) -> Any:
    """One ledger row, as a settled call writes it."""
    from apps.budgets.models import UsageRecord

    defaults: dict[str, Any] = {
        "reservation_id": f"node-{uuid.uuid4().hex}@1",
        "endpoint_name": "scripted",
        "model": "scripted-model",
        "input_tokens": 100,
        "output_tokens": 20,
        "cost": "0.5",
    }
    row = UsageRecord.objects.create(tenant=tenant, **(defaults | fields))
    if "created_at" in fields:  # auto_now_add ignores what create() was given
        UsageRecord.objects.filter(id=row.id).update(created_at=fields["created_at"])
        row.refresh_from_db()
    return row
