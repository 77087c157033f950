"""The demo agent's session budget stops a conversation cleanly on its fourth turn, before a
call of that turn could cross it, after warning at 80 %."""

from __future__ import annotations

import pytest

from apps.agents import orchestrator, services
from apps.agents.demo import DEMO_SESSION_BUDGET_TOKENS, seed_demo_agents
from apps.agents.models import ActionNode, Agent, SessionEvent, TurnStatus
from apps.budgets.models import Budget
from tests.agents.conftest import make_session
from tests.conftest import World

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_dispatch", "budget_prefix"),
]


def test_the_demo_agent_stops_cleanly_at_its_session_budget(world: World) -> None:
    seed_demo_agents(tenant=world.tenant_a)
    seed_demo_agents(tenant=world.tenant_a)  # idempotent
    agent = Agent.objects.get(tenant=world.tenant_a, slug="demo-scripted")
    [budget] = Budget.objects.filter(tenant=world.tenant_a, agent_id=agent.id)
    assert (budget.scope, budget.max_tokens) == ("session", DEMO_SESSION_BUDGET_TOKENS)

    session = make_session(agent, world.alice)
    outcomes = []
    for number in range(1, 5):
        turn = services.turn_enqueue(
            session=session, message=f"demo message {number}", requested_by=world.alice
        )
        orchestrator.turn_execute(turn_id=turn.id)
        turn.refresh_from_db()
        outcomes.append((turn.status, turn.outcome))
    assert outcomes == [(TurnStatus.COMPLETED, "completed")] * 3 + [
        (TurnStatus.FAILED, "budget_exceeded")
    ]
    # Stopped part way, before the call that could have crossed the cap.
    assert ActionNode.objects.filter(turn=turn, kind="model_call").count() < 3
    [failed] = SessionEvent.objects.filter(turn=turn, type="turn.failed")
    assert failed.payload["budget"]["scope"] == "session"
    assert failed.payload["budget"]["budget_id"] == str(budget.id)
    assert turn.detail.startswith("session budget of one agent")
    warned = SessionEvent.objects.filter(session=session, type="budget.warning")
    # Warned (once per turn) before it stopped, by this budget only.
    assert warned.exists() and {e.payload["budget_id"] for e in warned} == {str(budget.id)}
    assert not warned.filter(turn__seq=1).exists()
    session.refresh_from_db()
    assert session.tokens_used <= DEMO_SESSION_BUDGET_TOKENS
