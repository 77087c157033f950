"""Requests and tokens per minute, per tenant and per user, counted in the reserve step."""

from __future__ import annotations

import time

import pytest
import redis
from django.test import override_settings

from apps.budgets.exceptions import RateLimited
from apps.budgets.ledger.redis_ledger import RedisLedger
from apps.budgets.ledger.types import RateWindow
from apps.budgets.models import TenantBudgetSettings
from apps.budgets.services import ledger as svc
from tests.conftest import World


def _call(led: RedisLedger, rid: str, windows: list[RateWindow], tokens: int = 10) -> str:
    return led.reserve(
        reservation_id=rid,
        caps=[],
        windows=windows,
        tokens=tokens,
        micros=0,
        deadline_s=time.time() + 60,
        meta={},
    ).kind


@pytest.mark.django_db
@override_settings(WARDEN_MODEL_RPM_PER_TENANT=3, WARDEN_MODEL_RPM_PER_USER=2)
def test_per_user_and_per_tenant_requests_per_minute(world: World, prefix: str) -> None:
    alice = svc.windows_for(tenant_id=world.tenant_a.id, user_id=world.alice.id)
    bob = svc.windows_for(tenant_id=world.tenant_a.id, user_id=world.bob.id)
    assert [(w.scope, w.kind, w.limit) for w in alice] == [("tenant", "rpm", 3), ("user", "rpm", 2)]
    led = svc.ledger()
    assert [_call(led, f"a{i}", alice) for i in range(3)] == ["ok", "ok", "rate"]
    refused = led.reserve(
        reservation_id="a9",
        caps=[],
        windows=alice,
        tokens=1,
        micros=0,
        deadline_s=time.time() + 60,
        meta={},
    )
    assert refused.window is not None and refused.window.scope == "user"
    assert 0 < refused.retry_after_s <= 60
    # Bob has his own user window, but the tenant's is shared: one more, then none.
    assert [_call(led, f"b{i}", bob) for i in range(2)] == ["ok", "rate"]
    with pytest.raises(RateLimited) as limited:
        svc.admission_check(caps=[], windows=bob)
    assert limited.value.code == "rate_limited"
    assert limited.value.details["scope"] == "tenant"
    assert limited.value.details["kind"] == "rpm"
    assert 1 <= limited.value.retry_after <= 60  # type: ignore[operator]
    # Another tenant is not touched.
    other = svc.windows_for(tenant_id=world.tenant_b.id, user_id=world.charlie.id)
    assert _call(led, "c1", other) == "ok"


@pytest.mark.django_db
@override_settings(WARDEN_MODEL_RPM_PER_TENANT=3)
def test_a_tenants_settings_replace_the_defaults(world: World, prefix: str) -> None:
    TenantBudgetSettings.objects.create(
        tenant=world.tenant_a, rpm_per_tenant=0, tpm_per_tenant=5000, tpm_per_user=None
    )
    windows = svc.windows_for(tenant_id=world.tenant_a.id, user_id=world.alice.id)
    # rpm 0: none; tpm set: 5000; per user: the deployment's defaults (0: none).
    assert [(w.scope, w.kind, w.limit) for w in windows] == [("tenant", "tpm", 5000)]
    assert svc.windows_for(tenant_id=world.tenant_b.id, user_id=None)[0].limit == 3


def test_tokens_per_minute_count_the_hold_then_the_truth(
    bare_ledger: RedisLedger, redis_client: redis.Redis
) -> None:
    tpm = [
        RateWindow(key=f"{bare_ledger.prefix}:rate:t1:tpm", scope="tenant", kind="tpm", limit=1000)
    ]
    assert _call(bare_ledger, "a", tpm, tokens=600) == "ok"
    assert _call(bare_ledger, "b", tpm, tokens=600) == "rate"
    # The call used 100 of its 600: the window gives the rest back.
    bare_ledger.settle(reservation_id="a", caps=[], windows=tpm, tokens=100, micros=0)
    assert int(redis_client.hget(tpm[0].key, "used") or 0) == 100
    assert _call(bare_ledger, "b", tpm, tokens=600) == "ok"


def test_an_empty_window_admits_one_call_larger_than_the_limit(bare_ledger: RedisLedger) -> None:
    """Else a call whose bound exceeds the whole tpm limit could never run at all."""
    tpm = [
        RateWindow(key=f"{bare_ledger.prefix}:rate:t1:tpm", scope="tenant", kind="tpm", limit=100)
    ]
    assert _call(bare_ledger, "a", tpm, tokens=500) == "ok"
    assert _call(bare_ledger, "b", tpm, tokens=1) == "rate"


def test_retry_after_is_when_the_window_ends(
    bare_ledger: RedisLedger, redis_client: redis.Redis
) -> None:
    now = [1_000_000.0]
    led = RedisLedger(redis_client, prefix=bare_ledger.prefix, clock=lambda: now[0])
    rpm = [RateWindow(key=f"{led.prefix}:rate:t1:rpm", scope="tenant", kind="rpm", limit=1)]
    assert _call(led, "a", rpm) == "ok"
    now[0] += 45
    result = led.reserve(
        reservation_id="b", caps=[], windows=rpm, tokens=1, micros=0, deadline_s=0, meta={}
    )
    assert result.kind == "rate" and result.retry_after_s == pytest.approx(15)
    assert led.peek(caps=[], windows=rpm).kind == "rate"
