"""/metrics shows the budget figures every process shares (read from Redis at scrape time)."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from apps.budgets.ledger.types import RateWindow
from apps.budgets.services import ledger as svc
from tests.budgets.conftest import cap, loaded_counter


@pytest.mark.django_db
def test_metrics_show_open_holds_refusals_and_rate_limits(prefix: str) -> None:
    led = svc.ledger()
    tenant = loaded_counter(led)
    caps = [cap(tenant, tokens=100)]
    rpm = [RateWindow(key=f"{prefix}:rate:t1:rpm", scope="tenant", kind="rpm", limit=5)]
    for rid in ("a", "b"):
        svc.reserve(
            reservation_id=rid,
            caps=caps,
            windows=rpm if rid == "a" else [],
            tokens=60,
            micros=0,
            deadline_s=time.time() + 60,
            meta={},
        )
    led.client.hset(rpm[0].key, mapping={"used": 5})
    svc.reserve(
        reservation_id="c",
        caps=[],
        windows=rpm,
        tokens=1,
        micros=0,
        deadline_s=time.time() + 60,
        meta={},
    )
    svc.stats_incr("overrun")
    svc.stats_incr("settled_late")

    body = Client().get("/metrics").content.decode()
    assert "warden_budget_reservations_open 1.0" in body
    assert 'warden_budget_refusals_total{scope="tenant"} 1.0' in body
    assert 'warden_budget_refusals_total{scope="session"} 0.0' in body
    assert 'warden_model_rate_limited_total{scope="tenant"} 1.0' in body
    assert "warden_budget_overruns_total 1.0" in body
    assert "warden_budget_reservations_expired_total 0.0" in body
    assert "warden_budget_reservations_settled_late_total 1.0" in body
