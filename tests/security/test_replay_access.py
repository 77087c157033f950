"""Replay and policy what-if, attacked: another tenant's keys and users learn nothing of a
tenant's sessions or decisions, and roles without the permission are refused."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.agents import orchestrator, services
from apps.agents.models import AgentSession, SessionEvent
from apps.policies import services as policy_services
from apps.policies.models import PolicyMode
from tests.agents.conftest import make_agent, make_session, no_dispatch
from tests.conftest import World, client_for

__all__ = ["no_dispatch"]  # the agents' fixture: turns run in-process here

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]

DENY_ALL = """\
package warden

import rego.v1

decision := {"allow": false, "reasons": ["nothing runs"]}
"""


@pytest.fixture
def recorded(world: World) -> AgentSession:
    agent = make_agent(
        world.tenant_a,
        [{"tool": "calculator", "arguments": {"expression": "1+1"}}, {"final": "2"}],
        tools=["calculator"],
    )
    session = make_session(agent, world.bob)
    turn = services.turn_enqueue(session=session, message="1+1?")
    orchestrator.turn_execute(turn_id=turn.id)
    return session


def test_replay_of_another_tenants_session_is_404(
    world: World, recorded: AgentSession, charlie_client: APIClient
) -> None:
    url = f"/api/v1/sessions/{recorded.id}/replay"
    events = SessionEvent.objects.filter(session=recorded).count()
    for attacker in (charlie_client, client_for(world.tenant_b, ["admin"])):
        response = attacker.post(url, {}, format="json")
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert SessionEvent.objects.filter(session=recorded).count() == events


def test_replay_needs_the_replay_permission(
    world: World, recorded: AgentSession, bob_client: APIClient
) -> None:
    url = f"/api/v1/sessions/{recorded.id}/replay"
    # Bob owns the session, but a member may not replay (it shows the model's reasoning).
    response = bob_client.post(url, {}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    response = client_for(world.tenant_a, ["read"]).post(url, {}, format="json")
    assert response.status_code == 403
    assert APIClient().post(url, {}, format="json").status_code == 401
    # An operator (a write-scoped key) may.
    response = client_for(world.tenant_a, ["write"]).post(url, {}, format="json")
    assert response.status_code == 200 and response.json()["reproduces"] is True


def test_what_if_never_crosses_tenants(
    world: World, recorded: AgentSession, charlie_client: APIClient
) -> None:
    theirs = policy_services.policy_create(
        tenant=world.tenant_a, name="deny", source=DENY_ALL, mode=PolicyMode.REPORT_ONLY
    )
    mine = policy_services.policy_create(
        tenant=world.tenant_b, name="deny", source=DENY_ALL, mode=PolicyMode.REPORT_ONLY
    )
    since = {"since": "2000-01-01T00:00:00Z"}
    # Tenant A's policy: not found for tenant B.
    response = charlie_client.post(f"/api/v1/policies/{theirs.id}/what-if", since, format="json")
    assert response.status_code == 404
    # Tenant B's own policy over tenant A's session: refused like a session that isn't there.
    response = charlie_client.post(
        f"/api/v1/policies/{mine.id}/what-if", {"sessions": [str(recorded.id)]}, format="json"
    )
    assert response.status_code == 400 and response.json()["code"] == "unknown_session"
    # And over all time, tenant B's policy sees none of tenant A's decisions.
    response = charlie_client.post(f"/api/v1/policies/{mine.id}/what-if", since, format="json")
    assert response.status_code == 200
    assert response.json()["evaluated"] == 0 and response.json()["changed"] == []
    # Tenant A's own view of the same: its decision would change.
    response = client_for(world.tenant_a, ["write"]).post(
        f"/api/v1/policies/{theirs.id}/what-if", since, format="json"
    )
    assert response.status_code == 200 and response.json()["changed_count"] == 1


def test_what_if_needs_policy_read(
    world: World, recorded: AgentSession, bob_client: APIClient
) -> None:
    policy = policy_services.policy_create(
        tenant=world.tenant_a, name="deny", source=DENY_ALL, mode=PolicyMode.REPORT_ONLY
    )
    url = f"/api/v1/policies/{policy.id}/what-if"
    body = {"sessions": [str(recorded.id)]}
    assert bob_client.post(url, body, format="json").status_code == 403
    response = client_for(world.tenant_a, ["read"]).post(url, body, format="json")
    assert response.status_code == 403
