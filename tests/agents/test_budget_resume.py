"""Budgets across resume: a turn that is interrupted (worker killed, or parked on a long-running
tool job) and resumed is stopped by its budget at the same point as one that ran straight
through, and the session counts every token once."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Sum

from apps.agents import adapters, jobs, orchestrator, services
from apps.agents.models import ActionNode, Agent, AgentSession, ToolJob, Turn, TurnStatus
from apps.budgets.models import UsageRecord
from apps.tenants.models import Tenant
from apps.tools import services as tool_services
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]

CALCULATE = {"tool": "calculator", "arguments": {"expression": "6 * 7"}, "say": "Calculating."}
# Generous on steps, tight on tokens: the per-turn budget stops it part way (each call holds
# its prompt's byte bound plus its 200-token output allowance).
SCRIPT: list[dict[str, Any]] = [
    {"tool": "count_up", "arguments": {"steps": 1}, "say": "Counting."},
    *[CALCULATE] * 8,
    {"final": "Done."},
]
BUDGET = {"max_input_tokens_per_turn": 750, "max_output_tokens_per_turn": 200}


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: nothing below the loop catches it, nothing is cleaned up."""


def budgeted_agent(tenant: Tenant) -> Agent:
    return make_agent(
        tenant, SCRIPT, tools=["count_up", "calculator"], slug="budgeted", max_steps=12, **BUDGET
    )


def spent(turn: Turn) -> dict[str, Any]:
    """What a user sees of a finished turn's spend, and where the budget stopped it."""
    turn.refresh_from_db()
    models = ActionNode.objects.filter(turn=turn, kind="model_call")
    recorded = models.aggregate(i=Sum("input_tokens"), o=Sum("output_tokens"))
    session = AgentSession.objects.get(id=turn.session_id)
    return {
        "status": (turn.status, turn.outcome),
        "model_calls": models.count(),
        "tool_calls": ActionNode.objects.filter(turn=turn, kind="tool_call").count(),
        "turn_tokens": (turn.input_tokens, turn.output_tokens),
        "recorded_tokens": (recorded["i"], recorded["o"]),
        "session_tokens": session.tokens_used,
        "detail": turn.detail,
    }


def uninterrupted(tenant: Tenant) -> dict[str, Any]:
    turn = services.turn_enqueue(session=make_session(budgeted_agent(tenant)), message="go")
    orchestrator.turn_execute(turn_id=turn.id)
    result = spent(turn)
    assert result["status"] == (TurnStatus.FAILED, "budget_exceeded"), result
    # The budget stopped it part way, after the point where the other runs are interrupted.
    assert 5 < result["model_calls"] < len(SCRIPT), result["detail"]
    assert result["turn_tokens"] == result["recorded_tokens"]
    assert result["session_tokens"] == sum(result["turn_tokens"])
    return result


def charged_once(turn: Turn) -> None:
    """Every model call has one ledger row; calls replayed after a resume are not charged."""
    rows = UsageRecord.objects.filter(turn_id=turn.id)
    models = ActionNode.objects.filter(turn=turn, kind="model_call")
    assert sorted(rows.values_list("node_id", flat=True)) == sorted(
        models.values_list("node_id", flat=True)
    )
    assert rows.aggregate(t=Sum("input_tokens"))["t"] == turn.input_tokens


def test_a_turn_resumed_after_its_worker_died_stops_where_it_would_have(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = uninterrupted(world.tenant_b)

    agent = budgeted_agent(world.tenant_a)
    turn = services.turn_enqueue(session=make_session(agent), message="go")
    calls = 0
    real_tool_call = adapters.tool_call

    def dies_in_the_fifth_tool_call(*args: Any, **kwargs: Any) -> Any:
        # While the tool runs: its model call and its started node are committed.
        nonlocal calls
        calls += 1
        if calls == 5:
            raise WorkerKilled()
        return real_tool_call(*args, **kwargs)

    monkeypatch.setattr(adapters, "tool_call", dies_in_the_fifth_tool_call)
    with pytest.raises(WorkerKilled):
        orchestrator.turn_execute(turn_id=turn.id)
    assert Turn.objects.get(id=turn.id).status == TurnStatus.RUNNING
    monkeypatch.setattr(adapters, "tool_call", real_tool_call)

    orchestrator.turn_execute(turn_id=turn.id)  # the redelivered task
    result = spent(turn)
    assert Turn.objects.get(id=turn.id).attempts == 2
    assert result == expected
    charged_once(turn)


def test_a_turn_parked_on_a_tool_job_stops_where_it_would_have(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = uninterrupted(world.tenant_b)  # count_up runs inline there

    dispatched: list[str] = []
    monkeypatch.setattr(
        "apps.agents.jobs.tool_job_dispatch", lambda *, job_id: dispatched.append(str(job_id))
    )
    tool = tool_services.tool_register_builtin(tenant=world.tenant_a, name="count_up")
    tool_services.tool_update(tool=tool, enabled=True, long_running=True)
    agent = budgeted_agent(world.tenant_a)
    turn = services.turn_enqueue(session=make_session(agent), message="go")

    assert orchestrator.turn_execute(turn_id=turn.id) == "waiting"
    # While it waits, what it spent already shows on the turn and the session.
    parked = spent(turn)
    assert parked["model_calls"] == 1
    assert parked["turn_tokens"] == parked["recorded_tokens"]
    assert parked["session_tokens"] == sum(parked["turn_tokens"]) > 0

    job = ToolJob.objects.get(turn=turn)
    assert dispatched == [str(job.id)]
    assert jobs.tool_job_run(job_id=job.id) == "completed"
    orchestrator.turn_execute(turn_id=turn.id)  # requeued by the job
    assert spent(turn) == expected
