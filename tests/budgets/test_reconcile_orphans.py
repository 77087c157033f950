"""A hold whose tenant was deleted before it expired must not stop the reconciler: it is
dropped, and the holds behind it are charged."""

from __future__ import annotations

import time
import uuid

import pytest

from apps.budgets.models import UsageKind, UsageRecord
from apps.budgets.services import ledger as svc
from tests.conftest import World

pytestmark = pytest.mark.django_db


def _hold(
    reservation_id: str, tenant_id: str, deadline_s: float, user_id: int | None = None
) -> None:
    result = svc.reserve(
        reservation_id=reservation_id,
        caps=[],
        windows=[],
        tokens=100,
        micros=1_000,
        deadline_s=deadline_s,
        meta={
            "tenant_id": tenant_id,
            "user_id": user_id,
            "turn_id": str(uuid.uuid4()),
            "cost": "0.001",
        },
    )
    assert result.kind == "ok"


def test_a_hold_of_a_deleted_tenant_is_dropped_and_the_next_one_charged(
    world: World, prefix: str
) -> None:
    now = time.time()
    # First in line (earliest deadline): a hold whose tenant no longer exists.
    _hold("gone@1", str(uuid.uuid4()), now - 20)
    _hold("live@1", str(world.tenant_a.id), now - 10)

    assert svc.reservations_reconcile(now_s=now) == 2
    assert svc.ledger().open_count() == 0
    [row] = UsageRecord.objects.all()
    assert (row.reservation_id, row.kind, row.tenant_id) == (
        "live@1",
        UsageKind.EXPIRED_RESERVATION,
        world.tenant_a.id,
    )
    assert svc.reservations_reconcile(now_s=now + 3600) == 0


def test_a_hold_of_a_deleted_user_is_charged_to_the_tenant(world: World, prefix: str) -> None:
    now = time.time()
    _hold("user-gone@1", str(world.tenant_a.id), now - 10, user_id=999_999)
    assert svc.reservations_reconcile(now_s=now) == 1
    [row] = UsageRecord.objects.all()
    assert (row.reservation_id, row.tenant_id, row.user_id) == (
        "user-gone@1",
        world.tenant_a.id,
        None,
    )
