"""Four eyes: whoever asked for a turn cannot approve its parked call (they may reject it),
on the API as in the console and Slack (one rule, in `approval_decide`); an operator can allow
it for a one-person tenant with WARDEN_APPROVAL_ALLOW_SELF."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from apps.approvals.models import ApprovalRequest, ApprovalStatus
from tests.approvals.conftest import ParkTurn, SentTasks
from tests.conftest import World

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_requester_cannot_approve_their_own_call_but_another_approver_can(
    world: World,
    park_turn: ParkTurn,
    sent: SentTasks,
    alice_client: APIClient,
    dave_client: APIClient,
) -> None:
    parked = park_turn()  # alice, an owner (who may decide), asked for this turn
    url = f"/api/v1/approvals/{parked.approval.id}/approve"

    refused = alice_client.post(url, {"rationale": "mine, fine"}, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "self_approval"
    assert ApprovalRequest.objects.get(id=parked.approval.id).status == ApprovalStatus.PENDING
    assert sent.names() == []  # nothing resumed

    approved = dave_client.post(url, {"rationale": "second pair of eyes"}, format="json")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert approved.json()["approver"] == "dave"


def test_the_requester_may_reject_their_own_call(
    world: World, park_turn: ParkTurn, sent: SentTasks, alice_client: APIClient
) -> None:
    parked = park_turn()
    rejected = alice_client.post(
        f"/api/v1/approvals/{parked.approval.id}/reject",
        {"rationale": "changed my mind"},
        format="json",
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"


@override_settings(WARDEN_APPROVAL_ALLOW_SELF=True)
def test_a_one_person_tenant_can_allow_self_approval(
    world: World, park_turn: ParkTurn, sent: SentTasks, alice_client: APIClient
) -> None:
    parked = park_turn()
    approved = alice_client.post(
        f"/api/v1/approvals/{parked.approval.id}/approve", {}, format="json"
    )
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
