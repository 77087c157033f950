"""A parked turn, decided in the API, resumes once: approved → the tool runs exactly once;
rejected or expired → it never runs and the model is told why. In-process: the test plays
the worker (the decision's task and the turn are run here, in order)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.agents import orchestrator
from apps.agents import services as agent_services
from apps.agents.approval_flow import turn_resume_on_decision
from apps.agents.models import ActionNode, SessionEvent, Turn, TurnStatus
from apps.approvals import services as approval_services
from apps.approvals.models import ApprovalRequest, ApprovalStatus
from tests.approvals.conftest import ParkTurn, SentTasks
from tests.conftest import World

pytestmark = pytest.mark.django_db(transaction=True)

DECIDED = approval_services.APPROVAL_DECIDED_TASK


def events(turn: Turn) -> list[SessionEvent]:
    return list(SessionEvent.objects.filter(turn=turn).order_by("id"))


def types(turn: Turn) -> list[str]:
    return [e.type for e in events(turn)]


def tool_node(turn: Turn) -> ActionNode:
    return ActionNode.objects.get(turn=turn, kind="tool_call")


def test_a_gated_call_parks_the_turn_with_a_request(
    world: World, park_turn: ParkTurn, sent: SentTasks
) -> None:
    parked = park_turn(arguments={"api_token": "sk-live-abcdef123456"})
    turn, approval = parked.turn, parked.approval
    assert (turn.status, turn.outcome) == (TurnStatus.WAITING, "waiting_approval")
    assert not parked.ledger.exists()
    assert approval.status == ApprovalStatus.PENDING
    assert approval.tool_name == "guarded_append"
    assert approval.call_key == tool_node(turn).node_id and approval.step_index == 0
    # The default policy's reason (apps/policies/defaults.py): a high-risk tool.
    assert approval.reasons == ["tool guarded_append is high risk"]
    assert approval.requested_by == world.alice
    assert approval.session_id == turn.session_id
    # The digest pins the exact arguments; the summary never carries the secret.
    assert len(approval.arguments_digest) == 64
    assert approval.arguments_summary["api_token"] == "[redacted]"
    assert approval.context["agent"] == "Agent guarded" and approval.context["user"] == "alice"
    ttl = approval.expires_at - approval.created_at
    assert timedelta(hours=23, minutes=59) < ttl <= timedelta(hours=24)
    waiting = SessionEvent.objects.get(turn=turn, type="turn.waiting").payload
    assert waiting["approval_id"] == str(approval.id)
    assert waiting["tool"] == "guarded_append"
    assert "sk-live-abcdef123456" not in str(waiting)
    assert tool_node(turn).status == "waiting_approval"
    # The worker is free; a redelivered turn does nothing while it waits.
    assert orchestrator.turn_execute(turn_id=turn.id) == "waiting"
    assert ApprovalRequest.objects.filter(turn_id=turn.id).count() == 1
    assert sent.names() == []  # no decision, no Slack: nothing to tell anybody


def test_approve_resumes_the_turn_and_runs_the_tool_exactly_once(
    world: World,
    park_turn: ParkTurn,
    sent: SentTasks,
    dave_client: APIClient,
    no_dispatch: list[str],
) -> None:
    parked = park_turn(text="approved line")
    turn, approval = parked.turn, parked.approval
    no_dispatch.clear()

    response = dave_client.post(
        f"/api/v1/approvals/{approval.id}/approve", {"rationale": "looks fine"}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["approver"], body["decided_via"]) == ("approved", "dave", "api")
    assert body["decided_by"] == "dave" and body["rationale"] == "looks fine"
    assert sent.names() == [DECIDED]
    # A double click: refused, and nothing else is announced.
    again = dave_client.post(f"/api/v1/approvals/{approval.id}/approve", {}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "already_decided"
    reject = dave_client.post(
        f"/api/v1/approvals/{approval.id}/reject", {"rationale": "changed my mind"}, format="json"
    )
    assert reject.status_code == 409 and reject.json()["code"] == "already_decided"
    assert sent.names() == [DECIDED]

    assert sent.run(DECIDED) == ["resumed"]
    turn.refresh_from_db()
    assert turn.status == TurnStatus.QUEUED and no_dispatch == [str(turn.id)]
    assert orchestrator.turn_execute(turn_id=turn.id) == "completed"
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED, turn.detail
    assert parked.ledger.read_text().splitlines() == ["approved line"]
    assert turn.final_answer == 'Result: {"lines": 1}'

    # The approver and the rationale are in the steps and on the timeline.
    node = tool_node(turn)
    assert node.status == "completed"
    assert node.inputs["approval"] == {
        "approved": True,
        "approver": "dave",
        "rationale": "looks fine",
    }
    decided = SessionEvent.objects.get(turn=turn, type="approval.decided").payload
    assert decided["approval_id"] == str(approval.id)
    assert (decided["status"], decided["approver"], decided["rationale"]) == (
        "approved",
        "dave",
        "looks fine",
    )
    kinds = types(turn)
    assert kinds.count("tool.call") == 1 and kinds.count("tool.result") == 1
    assert kinds.index("turn.waiting") < kinds.index("approval.decided") < kinds.index("tool.call")
    assert kinds[-1] == "turn.completed"

    # A late duplicate of the decision's message, a redelivered turn: nothing runs again.
    assert turn_resume_on_decision(approval_id=approval.id) == "not_waiting"
    assert orchestrator.turn_execute(turn_id=turn.id) == "already_finished"
    assert parked.ledger.read_text().splitlines() == ["approved line"]


def test_reject_never_runs_the_tool_and_tells_the_model_why(
    world: World, park_turn: ParkTurn, sent: SentTasks, dave_client: APIClient
) -> None:
    parked = park_turn()
    turn, approval = parked.turn, parked.approval
    url = f"/api/v1/approvals/{approval.id}/reject"

    for body in ({}, {"rationale": "   "}):
        refused = dave_client.post(url, body, format="json")
        assert refused.status_code == 400 and refused.json()["code"] == "rationale_required"
    too_long = dave_client.post(url, {"rationale": "x" * 2001}, format="json")
    assert too_long.status_code == 400
    assert ApprovalRequest.objects.get(id=approval.id).status == ApprovalStatus.PENDING
    assert sent.names() == []

    response = dave_client.post(url, {"rationale": "not on production data"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    sent.run(DECIDED)
    assert orchestrator.turn_execute(turn_id=turn.id) == "completed"
    turn.refresh_from_db()

    assert not parked.ledger.exists()
    assert turn.final_answer == "Result: rejected by dave: not on production data"
    node = tool_node(turn)
    assert node.status == "rejected"
    assert node.inputs["approval"]["rationale"] == "not on production data"
    kinds = types(turn)
    assert "tool.call" not in kinds
    result = SessionEvent.objects.get(turn=turn, type="tool.result").payload
    assert result["status"] == "rejected" and result["ok"] is False


def test_expired_requests_are_closed_and_their_turns_told(
    world: World, park_turn: ParkTurn, sent: SentTasks, dave_client: APIClient
) -> None:
    parked = park_turn()
    turn, approval = parked.turn, parked.approval
    assert approval_services.approvals_expire() == 0  # not due yet
    ApprovalRequest.objects.filter(id=approval.id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert approval_services.approvals_expire() == 1
    assert approval_services.approvals_expire() == 0
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.EXPIRED and approval.decided_via == "expiry"

    late = dave_client.post(f"/api/v1/approvals/{approval.id}/approve", {}, format="json")
    assert late.status_code == 409 and late.json()["code"] == "expired"

    sent.run(DECIDED)
    assert orchestrator.turn_execute(turn_id=turn.id) == "completed"
    turn.refresh_from_db()
    assert not parked.ledger.exists()
    assert turn.final_answer.startswith("Result: rejected by no one (expired): Nobody decided")
    decided = SessionEvent.objects.get(turn=turn, type="approval.decided").payload
    assert decided["status"] == "expired"


def test_deciding_after_the_expiry_but_before_the_sweep_is_refused_and_expires_it(
    world: World, park_turn: ParkTurn, sent: SentTasks, dave_client: APIClient
) -> None:
    parked = park_turn()
    approval = parked.approval
    ApprovalRequest.objects.filter(id=approval.id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = dave_client.post(f"/api/v1/approvals/{approval.id}/approve", {}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "expired"
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.EXPIRED  # kept, though the request was refused
    assert sent.names() == [DECIDED]  # and the turn is told
    sent.run(DECIDED)
    orchestrator.turn_execute(turn_id=parked.turn.id)
    assert not parked.ledger.exists()


def test_a_lost_decision_message_is_recovered_by_the_sweep(
    world: World,
    park_turn: ParkTurn,
    sent: SentTasks,
    dave_client: APIClient,
    no_dispatch: list[str],
) -> None:
    parked = park_turn()
    turn, approval = parked.turn, parked.approval
    dave_client.post(f"/api/v1/approvals/{approval.id}/approve", {}, format="json")
    sent.sent.clear()  # the broker lost it
    no_dispatch.clear()
    assert orchestrator.turns_recover() == 0  # decided just now: give the message its time
    ApprovalRequest.objects.filter(id=approval.id).update(
        decided_at=timezone.now() - timedelta(hours=1)
    )
    assert orchestrator.turns_recover() == 1
    turn.refresh_from_db()
    assert turn.status == TurnStatus.QUEUED and no_dispatch == [str(turn.id)]
    assert orchestrator.turn_execute(turn_id=turn.id) == "completed"
    assert parked.ledger.read_text().splitlines() == ["hello"]
    assert orchestrator.turns_recover() == 0


def test_cancelling_a_waiting_turn_withdraws_its_request(
    world: World, park_turn: ParkTurn, sent: SentTasks, dave_client: APIClient
) -> None:
    parked = park_turn()
    agent_services.turn_cancel(turn=parked.turn)
    approval = ApprovalRequest.objects.get(id=parked.approval.id)
    assert approval.status == ApprovalStatus.EXPIRED and approval.decided_via == "cancel"
    response = dave_client.post(f"/api/v1/approvals/{approval.id}/approve", {}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "expired"
    assert sent.run(DECIDED) == ["not_waiting"]
    assert Turn.objects.get(id=parked.turn.id).status == TurnStatus.CANCELLED
    assert not parked.ledger.exists()


def test_an_approved_call_whose_arguments_changed_does_not_run(
    world: World, park_turn: ParkTurn, sent: SentTasks, dave_client: APIClient
) -> None:
    parked = park_turn(text="what was approved")
    node = tool_node(parked.turn)
    # What the approver saw is pinned by its digest; a node changed behind their back (a
    # bug, a bad migration, someone with database access) is not what was approved.
    ActionNode.objects.filter(id=node.id).update(
        inputs={**node.inputs, "arguments": {**node.inputs["arguments"], "text": "other"}}
    )
    dave_client.post(f"/api/v1/approvals/{parked.approval.id}/approve", {}, format="json")
    sent.run(DECIDED)
    orchestrator.turn_execute(turn_id=parked.turn.id)
    turn = Turn.objects.get(id=parked.turn.id)
    assert not parked.ledger.exists()
    assert "not the ones that were approved" in turn.final_answer
