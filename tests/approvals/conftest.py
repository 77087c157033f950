"""Approvals fixtures: an approver in tenant A, a turn parked on `guarded_append`, and the
approvals' tasks recorded (and run on demand, in this process) instead of sent to a worker.

`guarded_append` (tests/agents/tools.py) is a high-risk tool, so the tenant's shipped default
policy sends each of its calls to approval: the real gate, in this process and in the worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import current_app
from rest_framework.test import APIClient

from apps.agents import orchestrator
from apps.agents import services as agent_services
from apps.agents.approval_flow import turn_resume_on_decision
from apps.agents.models import Turn
from apps.approvals import services as approval_services
from apps.approvals.models import ApprovalRequest
from apps.tenants.models import Role
from tests.agents.conftest import make_agent, make_session, no_dispatch
from tests.conftest import World
from tests.factories import MembershipFactory, UserFactory

__all__ = ["no_dispatch"]


@dataclass
class SentTasks:
    """Tasks the approvals app enqueued, by name, in order."""

    sent: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [name for name, _ in self.sent]

    def run(self, name: str) -> list[Any]:
        """Run (in this process, through Celery's apply) every recorded task of that name."""
        results = []
        for task, args in [s for s in self.sent if s[0] == name]:
            self.sent.remove((task, args))
            if task == approval_services.APPROVAL_DECIDED_TASK:
                results.append(turn_resume_on_decision(approval_id=args[0]))
            else:
                results.append(current_app.tasks[task].apply(args=list(args)).get())
        return results


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> SentTasks:
    record = SentTasks()

    def send(name: str, *args: Any) -> None:
        record.sent.append((name, args))

    monkeypatch.setattr(approval_services, "task_send", send)
    return record


@pytest.fixture
def dave(world: World) -> Any:
    """An approver of tenant A with console access."""
    user = UserFactory(username="dave", is_staff=True)
    MembershipFactory(tenant=world.tenant_a, user=user, role=Role.APPROVER)
    return user


@pytest.fixture
def dave_client(dave: Any) -> APIClient:
    client = APIClient()
    client.force_login(dave)
    return client


@dataclass
class Parked:
    turn: Turn
    approval: ApprovalRequest
    ledger: Path


ParkTurn = Callable[..., Parked]


@pytest.fixture
def park_turn(world: World, tmp_path: Path, no_dispatch: list[str]) -> ParkTurn:
    """Run a turn in this process until it parks on `guarded_append`."""

    def park(
        text: str = "hello", arguments: dict[str, Any] | None = None, slug: str = "guarded"
    ) -> Parked:
        ledger = tmp_path / f"{slug}.txt"
        args = {"path": str(ledger), "text": text, **(arguments or {})}
        script = [
            {"tool": "guarded_append", "arguments": args, "say": "Writing it down."},
            {"final": "Result: ${tool_result_1}"},
        ]
        agent = make_agent(
            world.tenant_a, script, tools=["guarded_append"], slug=slug, endpoint_name=slug
        )
        session = make_session(agent, world.alice)
        turn = agent_services.turn_enqueue(
            session=session, message="write it", requested_by=world.alice
        )
        assert orchestrator.turn_execute(turn_id=turn.id) == "waiting"
        turn.refresh_from_db()
        return Parked(
            turn=turn, approval=ApprovalRequest.objects.get(turn_id=turn.id), ledger=ledger
        )

    return park
