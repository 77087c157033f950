"""Approvals: who may decide, and whose requests anybody sees. Deciding takes the approver,
admin or owner role (or an admin-scoped key); a member, an operator key or a read key is
refused with 403 and nothing changes; another tenant's request does not exist (404)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from apps.approvals import services as approval_services
from apps.approvals.models import ApprovalRequest, ApprovalStatus
from apps.tenants.models import Role
from tests.approvals.conftest import (
    ParkTurn,
    SentTasks,
    dave,
    dave_client,
    no_dispatch,
    park_turn,
    sent,
)
from tests.conftest import World, client_for
from tests.factories import MembershipFactory, UserFactory

__all__ = ["dave", "dave_client", "no_dispatch", "park_turn", "sent"]

pytestmark = pytest.mark.django_db(transaction=True)


def _decide(client: APIClient, approval: ApprovalRequest, verb: str = "approve") -> Any:
    return client.post(
        f"/api/v1/approvals/{approval.id}/{verb}", {"rationale": "because"}, format="json"
    )


def test_members_and_non_admin_keys_cannot_decide(
    world: World, park_turn: ParkTurn, sent: SentTasks, bob_client: APIClient
) -> None:
    approval = park_turn().approval
    for client in (
        bob_client,
        client_for(world.tenant_a, ["write"]),
        client_for(world.tenant_a, ["read"]),
    ):
        for verb in ("approve", "reject"):
            response = _decide(client, approval, verb)
            assert response.status_code == 403, response.json()
            assert response.json()["code"] == "permission_denied"
        # They may still see the request (reads are for every member).
        assert client.get(f"/api/v1/approvals/{approval.id}").status_code == 200
    assert ApprovalRequest.objects.get(id=approval.id).status == ApprovalStatus.PENDING
    assert sent.names() == []


def test_an_admin_key_decides_as_the_key_not_as_its_creator(
    world: World, park_turn: ParkTurn, sent: SentTasks
) -> None:
    approval = park_turn().approval
    key = client_for(world.tenant_a, ["admin"])
    response = _decide(key, approval)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["approver"].startswith("api key ") and body["decided_by"] is None


def test_another_tenant_cannot_see_or_decide(
    world: World, park_turn: ParkTurn, sent: SentTasks, charlie_client: APIClient
) -> None:
    approval = park_turn().approval
    for client in (charlie_client, client_for(world.tenant_b, ["admin"])):
        for verb in ("approve", "reject"):
            response = _decide(client, approval, verb)
            assert response.status_code == 404 and response.json()["code"] == "not_found"
        assert client.get(f"/api/v1/approvals/{approval.id}").status_code == 404
        assert client.get("/api/v1/approvals").json()["results"] == []
    assert ApprovalRequest.objects.get(id=approval.id).status == ApprovalStatus.PENDING
    assert sent.names() == []


def test_list_filters_and_refuses_bad_input(
    world: World, park_turn: ParkTurn, sent: SentTasks, dave_client: APIClient
) -> None:
    first = park_turn(slug="first").approval
    second = park_turn(slug="second").approval
    _decide(dave_client, second)
    listed = dave_client.get("/api/v1/approvals?status=pending").json()
    assert listed["count"] == 1 and [a["id"] for a in listed["results"]] == [str(first.id)]
    approved = dave_client.get("/api/v1/approvals?status=approved").json()["results"]
    assert [a["id"] for a in approved] == [str(second.id)]
    by_turn = dave_client.get(f"/api/v1/approvals?turn={first.turn_id}").json()["results"]
    assert [a["id"] for a in by_turn] == [str(first.id)]
    assert dave_client.get("/api/v1/approvals?page_size=1").json()["count"] == 2
    for query in ("status=maybe", "turn=not-a-uuid"):
        response = dave_client.get(f"/api/v1/approvals?{query}")
        assert response.status_code == 400 and response.json()["code"] == "validation_error"
    unknown = dave_client.post(
        f"/api/v1/approvals/{first.id}/approve", {"rationale": "", "force": True}, format="json"
    )
    assert unknown.status_code == 400 and unknown.json()["code"] == "unknown_field"
    garbled = dave_client.post(
        f"/api/v1/approvals/{first.id}/approve", "{nope", content_type="application/json"
    )
    assert garbled.status_code == 400
    not_text = dave_client.post(
        f"/api/v1/approvals/{first.id}/reject", {"rationale": ["a", "b"]}, format="json"
    )
    assert not_text.status_code == 400
    missing = dave_client.post(
        "/api/v1/approvals/00000000-0000-0000-0000-000000000000/approve", {}, format="json"
    )
    assert missing.status_code == 404
    assert ApprovalRequest.objects.get(id=first.id).status == ApprovalStatus.PENDING


def _waiting_on_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def test_two_approvers_at_once_one_decides_the_other_gets_409(
    world: World, park_turn: ParkTurn, sent: SentTasks, dave: Any
) -> None:
    approval = park_turn().approval  # alice asked: two other approvers race (four eyes)
    erin = UserFactory(username="erin")
    MembershipFactory(tenant=world.tenant_a, user=erin, role=Role.APPROVER)
    results: dict[str, Any] = {}

    def decide(user: Any, verb: str) -> None:
        client = APIClient()
        client.force_login(user)
        try:
            results[user.username] = _decide(client, approval, verb)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=decide, args=(erin, "approve")),
        threading.Thread(target=decide, args=(dave, "reject")),
    ]
    # Hold the request's row lock so that both decisions are in flight together, each
    # waiting for it; then let them race.
    with transaction.atomic():
        ApprovalRequest.objects.select_for_update().get(id=approval.id)
        for thread in threads:
            thread.start()
        deadline = 200
        while _waiting_on_locks() < 2 and deadline:
            threading.Event().wait(0.05)
            deadline -= 1
        assert _waiting_on_locks() >= 2, "the two decisions did not wait on the lock together"
    for thread in threads:
        thread.join(timeout=30)

    statuses = sorted(r.status_code for r in results.values())
    assert statuses == [200, 409], {k: r.json() for k, r in results.items()}
    loser = next(r for r in results.values() if r.status_code == 409)
    assert loser.json()["code"] == "already_decided"
    winner = next(r for r in results.values() if r.status_code == 200).json()
    stored = ApprovalRequest.objects.get(id=approval.id)
    assert stored.status == winner["status"] and stored.approver == winner["approver"]
    # One decision, one message to resume the turn.
    assert sent.names() == [approval_services.APPROVAL_DECIDED_TASK]
