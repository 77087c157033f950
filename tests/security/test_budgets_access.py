"""Budgets and usage, attacked: another tenant's admin key reads, changes and deletes none
of a tenant's budgets, can't aim a budget at its agents or members, and sums none of its
usage; a write-scoped key of the tenant itself can't raise its own cap."""

from __future__ import annotations

import pytest

from apps.budgets.models import Budget
from apps.budgets.services.budgets import budget_save
from tests.budgets.conftest import usage_row
from tests.conftest import World, client_for

pytestmark = pytest.mark.django_db


def test_another_tenants_key_gets_nothing_of_a_tenants_budgets_or_usage(world: World) -> None:
    from tests.budgets.test_api import make_agent

    budget = budget_save(tenant=world.tenant_a, scope="tenant", max_tokens=1000)
    agent = make_agent(world.tenant_a)
    usage_row(world.tenant_a, agent_id=agent.id, agent_slug=agent.slug, user=world.alice)
    attacker = client_for(world.tenant_b, ["admin"])
    url = f"/api/v1/budgets/{budget.id}"

    for response in (
        attacker.get(url),
        attacker.patch(url, {"max_tokens": 10**12}, format="json"),
        attacker.delete(url),
    ):
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert Budget.objects.get(id=budget.id).max_tokens == 1000
    assert attacker.get("/api/v1/budgets").json()["count"] == 0

    aimed = attacker.post(
        "/api/v1/budgets",
        {"scope": "agent", "agent": str(agent.id), "max_tokens": 1},
        format="json",
    )
    assert aimed.status_code == 400 and aimed.json()["code"] == "unknown_agent"
    at_alice = attacker.post(
        "/api/v1/budgets", {"scope": "user", "user": "alice", "max_tokens": 1}, format="json"
    )
    assert at_alice.status_code == 400 and at_alice.json()["code"] == "unknown_user"
    assert not Budget.objects.filter(tenant=world.tenant_b).exists()

    for group_by in ("day", "model", "agent", "user"):
        rows = attacker.get(f"/api/v1/usage?group_by={group_by}").json()["results"]
        assert rows == [], group_by


def test_a_write_key_cannot_raise_its_own_tenants_cap(world: World) -> None:
    budget = budget_save(tenant=world.tenant_a, scope="tenant", max_tokens=1000)
    operator_key = client_for(world.tenant_a, ["write"])
    raised = operator_key.patch(
        f"/api/v1/budgets/{budget.id}", {"max_tokens": 10**12}, format="json"
    )
    assert raised.status_code == 403 and raised.json()["code"] == "permission_denied"
    removed = operator_key.delete(f"/api/v1/budgets/{budget.id}")
    assert removed.status_code == 403
    assert Budget.objects.get(id=budget.id).max_tokens == 1000
