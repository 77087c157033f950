"""The agents app tells budgets about agents: a budget may name one, and goes with it."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from apps.budgets import targets
from apps.budgets.models import Budget
from tests.agents.conftest import make_agent
from tests.conftest import World

pytestmark = pytest.mark.django_db


def test_budgets_know_each_tenants_agents_and_only_theirs(world: World) -> None:
    ours = make_agent(world.tenant_a, [{"final": "ok"}], slug="ours")
    theirs = make_agent(world.tenant_b, [{"final": "ok"}], slug="theirs")

    assert targets.agent_lookup(world.tenant_a.id, ours.id) == "ours"
    assert targets.agent_lookup(world.tenant_a.id, theirs.id) is None
    assert targets.agent_lookup(world.tenant_a.id, uuid.uuid4()) is None
    assert [agent_id for agent_id, _ in targets.agent_choices([world.tenant_a.id])] == [ours.id]


def test_an_agents_budget_is_accepted_over_rest_and_deleted_with_the_agent(
    world: World, alice_client: APIClient
) -> None:
    agent = make_agent(world.tenant_a, [{"final": "ok"}], slug="spender")
    created = alice_client.post(
        "/api/v1/budgets",
        {"scope": "agent", "agent": str(agent.id), "period": "day", "max_cost": "5.00"},
        format="json",
    )
    assert created.status_code == 201, created.json()

    deleted = alice_client.delete(f"/api/v1/agents/{agent.id}")

    assert deleted.status_code == 204
    assert not Budget.objects.filter(agent_id=agent.id).exists()
