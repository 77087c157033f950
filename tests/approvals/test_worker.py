"""Approvals with a real Celery worker: the turn parks and frees the worker, the API's
decision reaches the worker as a task, and the resumed turn runs an approved call exactly
once — even when the worker is SIGKILLed during the resume — and a rejected one never."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from apps.agents import services as agent_services
from apps.agents.models import ActionNode, SessionEvent, Turn, TurnStatus
from apps.approvals.models import ApprovalRequest, ApprovalStatus
from tests.agents.conftest import make_session, wait_for_turn
from tests.agents.step_server import StepModelServer
from tests.agents.test_concurrency import step_agent
from tests.conftest import WorkerProcess, World

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FINISHED = ("completed", "failed", "cancelled")
PARKED = ("waiting", *FINISHED)


@pytest.fixture
def servers() -> Iterator[list[StepModelServer]]:
    started: list[StepModelServer] = []
    yield started
    for server in started:
        server.stop()


def parked_turn(world: World, server: StepModelServer, slug: str, message: str) -> Turn:
    agent = step_agent(world.tenant_a, server, slug=slug, tools=["guarded_append"])
    turn = agent_services.turn_enqueue(session=make_session(agent), message=message)
    turn = wait_for_turn(turn, statuses=PARKED)
    assert (turn.status, turn.outcome) == (TurnStatus.WAITING, "waiting_approval"), turn.detail
    return turn


def event_count(turn: Turn, kind: str) -> int:
    return SessionEvent.objects.filter(turn=turn, type=kind).count()


def test_approved_call_runs_exactly_once_though_the_worker_dies_during_the_resume(
    world: World,
    celery_worker: WorkerProcess,
    servers: list[StepModelServer],
    dave_client: APIClient,
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger.txt"
    server = StepModelServer(
        [("guarded_append", {"path": str(ledger), "text": "{tag}: approved"})],
        hold_step=1,  # after the tool ran, the resumed turn's next model call waits for us
    )
    servers.append(server)
    turn = parked_turn(world, server, "approve-kill", "approve me")
    approval = ApprovalRequest.objects.get(turn_id=turn.id)
    assert not ledger.exists()

    response = dave_client.post(
        f"/api/v1/approvals/{approval.id}/approve", {"rationale": "ship it"}, format="json"
    )
    assert response.status_code == 200, response.json()
    # The worker got the decision, requeued the turn, ran the tool, and asks the model again.
    assert server.wait_for(lambda s: s.held == 1), "the approved turn did not resume"
    assert ledger.read_text().splitlines() == ["approve me: approved"]

    celery_worker.kill()
    server.release()
    celery_worker.start()

    turn = wait_for_turn(turn, statuses=FINISHED)
    assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
    assert ledger.read_text().splitlines() == ["approve me: approved"]
    # Parked run, resumed run (killed), recovered run; the first model step was never asked
    # again, the one the kill cut was.
    assert turn.attempts == 3
    assert server.asked["approve me"] == [0, 1, 1]
    node = ActionNode.objects.get(turn=turn, kind="tool_call")
    assert node.status == "completed" and node.inputs["approval"]["approver"] == "dave"
    assert event_count(turn, "tool.call") == 1 and event_count(turn, "approval.decided") == 1
    assert event_count(turn, "turn.completed") == 1


def test_rejected_call_never_runs_and_the_model_is_told(
    world: World,
    celery_worker: WorkerProcess,
    servers: list[StepModelServer],
    dave_client: APIClient,
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger.txt"
    server = StepModelServer([("guarded_append", {"path": str(ledger), "text": "no"})])
    servers.append(server)
    turn = parked_turn(world, server, "reject-worker", "reject me")
    approval = ApprovalRequest.objects.get(turn_id=turn.id)
    response = dave_client.post(
        f"/api/v1/approvals/{approval.id}/reject", {"rationale": "not today"}, format="json"
    )
    assert response.status_code == 200

    turn = wait_for_turn(turn, statuses=FINISHED)
    assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
    assert not ledger.exists()
    assert ApprovalRequest.objects.get(id=approval.id).status == ApprovalStatus.REJECTED
    observation = ActionNode.objects.get(turn=turn, kind="observation")
    assert observation.outputs["content"] == "rejected by dave: not today"
    assert server.asked["reject me"] == [0, 1]  # the model was asked again, with that
    assert event_count(turn, "tool.call") == 0
