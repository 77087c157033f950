"""Charlie (tenant B) must have no access to tenant A's rows, and must not learn they exist.

Every API route with an object id in its path is listed in ROUTES with a way to
make a tenant-A object; a route missing from the list fails the coverage test,
so a new endpoint can't skip its isolation check.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from apps.tenants.models import Membership
from apps.tenants.services import api_key_create
from tests.conftest import World

pytestmark = pytest.mark.django_db

MakeObject = Callable[[World], dict[str, Any]]


def _member(world: World) -> dict[str, Any]:
    return {"membership_id": Membership.objects.get(tenant=world.tenant_a, user=world.bob).id}


def _invitation(world: World) -> dict[str, Any]:
    from apps.tenants.services import invitation_create

    invitation, _ = invitation_create(tenant=world.tenant_a, role="member", actor_roles={"owner"})
    return {"invitation_id": invitation.id}


def _key(world: World) -> dict[str, Any]:
    key, _ = api_key_create(tenant=world.tenant_a, name="a-secret", scopes=["read"])
    return {"key_id": key.id}


def _agent_obj(world: World) -> Any:
    from tests.agents.conftest import make_agent

    return make_agent(world.tenant_a, [{"final": "a"}], slug="a-agent")


def _endpoint(world: World) -> dict[str, Any]:
    return {"endpoint_id": _agent_obj(world).allowed_endpoints.get().id}


def _agent(world: World) -> dict[str, Any]:
    return {"agent_id": _agent_obj(world).id}


def _session_obj(world: World) -> Any:
    from tests.agents.conftest import make_session

    return make_session(_agent_obj(world), world.alice)


def _session(world: World) -> dict[str, Any]:
    return {"session_id": _session_obj(world).id}


def _turn(world: World) -> dict[str, Any]:
    from apps.agents.services import turn_enqueue

    return {"turn_id": turn_enqueue(session=_session_obj(world), message="hi").id}


def _mcp_server_obj(world: World) -> Any:
    from apps.tools.services import mcp_server_save

    # Unreachable on purpose: a foreign discover must be refused before any connection.
    return mcp_server_save(
        tenant=world.tenant_a,
        name="a-server",
        transport="streamable_http",
        url="http://127.0.0.1:9/",
    )


def _mcp_server(world: World) -> dict[str, Any]:
    return {"server_id": _mcp_server_obj(world).id}


def _tool(world: World) -> dict[str, Any]:
    from apps.tools.services import tool_register_wasm

    return {"tool_id": tool_register_wasm(tenant=world.tenant_a, module="word_count").id}


def _approval(world: World) -> dict[str, Any]:
    from apps.approvals.services import approval_request_create

    turn_id = _turn(world)["turn_id"]
    approval = approval_request_create(
        tenant_id=world.tenant_a.id,
        turn_id=turn_id,
        session_id=uuid.uuid4(),
        call_key=f"{turn_id}:0:0",
        tool_name="word_count",
        arguments={"text": "a"},
        reasons=["needs a human"],
    )
    return {"approval_id": approval.id}


def _policy(world: World) -> dict[str, Any]:
    from apps.policies.models import Policy

    return {"policy_id": Policy.objects.get(tenant=world.tenant_a, name="default").id}


def _budget(world: World) -> dict[str, Any]:
    from apps.budgets.services.budgets import budget_save

    budget = budget_save(tenant=world.tenant_a, scope="tenant", max_tokens=1000)
    return {"budget_id": budget.id}


def _document(world: World) -> dict[str, Any]:
    from apps.memory.services import document_ingest

    result = document_ingest(tenant=world.tenant_a, text="tenant A's secret", title="a-doc")
    return {"document_id": result.document.id}


# route name -> (object maker, methods to try with a body)
ROUTES: dict[str, tuple[MakeObject, list[tuple[str, dict[str, Any] | None]]]] = {
    "member-detail": (_member, [("get", None), ("patch", {"role": "admin"}), ("delete", None)]),
    "invitation-detail": (_invitation, [("get", None), ("delete", None)]),
    "api-key-detail": (_key, [("get", None), ("delete", None)]),
    "api-key-revoke": (_key, [("post", None)]),
    "endpoint-detail": (_endpoint, [("get", None), ("patch", {"model": "x"}), ("delete", None)]),
    "agent-detail": (_agent, [("get", None), ("patch", {"name": "x"}), ("delete", None)]),
    "session-detail": (_session, [("get", None)]),
    "session-close": (_session, [("post", None)]),
    "session-state": (_session, [("get", None), ("put", {"state": {"a": 1}})]),
    "session-turns": (_session, [("get", None), ("post", {"message": "hi"})]),
    "session-events": (_session, [("get", None)]),
    "session-audit": (_session, [("get", None)]),
    "session-replay": (_session, [("post", {})]),
    "turn-detail": (_turn, [("get", None)]),
    "turn-cancel": (_turn, [("post", None)]),
    "turn-steps": (_turn, [("get", None)]),
    "mcp-server-detail": (
        _mcp_server,
        [("get", None), ("patch", {"description": "x"}), ("delete", None)],
    ),
    "mcp-server-discover": (_mcp_server, [("post", None)]),
    "tool-detail": (_tool, [("get", None), ("patch", {"enabled": True})]),
    "tool-approve": (_tool, [("post", None)]),
    "approval-detail": (_approval, [("get", None)]),
    "approval-approve": (_approval, [("post", {"rationale": "mine"})]),
    "approval-reject": (_approval, [("post", {"rationale": "mine"})]),
    "policy-detail": (
        _policy,
        [("get", None), ("patch", {"mode": "disabled"}), ("delete", None)],
    ),
    "policy-version-list": (_policy, [("get", None)]),
    "policy-evaluate": (_policy, [("post", {"input": {}})]),
    "policy-what-if": (_policy, [("post", {"since": "2026-01-01T00:00:00Z"})]),
    "budget-detail": (
        _budget,
        [("get", None), ("patch", {"max_tokens": 1}), ("delete", None)],
    ),
    "memory-document-detail": (_document, [("get", None), ("delete", None)]),
}


def _api_routes_with_ids() -> set[str]:
    names: set[str] = set()

    def walk(patterns: list[Any], prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and p.name:
                full = prefix + str(p.pattern)
                if full.startswith("api/v1/") and "<" in full:
                    names.add(p.name)

    walk(get_resolver().url_patterns, "")
    return names


def test_every_api_route_with_an_id_has_an_isolation_case() -> None:
    missing = _api_routes_with_ids() - set(ROUTES)
    assert not missing, f"add isolation cases for: {sorted(missing)}"


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_foreign_ids_answer_404(world: World, charlie_client: APIClient, route: str) -> None:
    from django.urls import reverse

    make, methods = ROUTES[route]
    kwargs = make(world)
    url = reverse(route, kwargs=kwargs)
    for method, body in methods:
        response = getattr(charlie_client, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
        assert response.json()["code"] == "not_found"
    # And nothing changed on tenant A's side.
    assert Membership.objects.get(tenant=world.tenant_a, user=world.bob).role == "member"
    from apps.tenants.models import Invitation

    assert not Invitation.objects.filter(revoked_at__isnull=False).exists()
    from apps.agents.models import Agent, AgentSession, Turn

    assert not Agent.objects.filter(tenant=world.tenant_a, name="x").exists()
    assert not AgentSession.objects.filter(tenant=world.tenant_a).exclude(status="active").exists()
    assert not Turn.objects.filter(tenant=world.tenant_a).exclude(status="queued").exists()
    from apps.tools.models import McpServer, Tool

    assert not McpServer.objects.filter(tenant=world.tenant_a).exclude(status="unknown").exists()
    assert not McpServer.objects.filter(tenant=world.tenant_a, description="x").exists()
    assert not Tool.objects.filter(tenant=world.tenant_a, enabled=True).exists()
    from apps.approvals.models import ApprovalRequest

    assert not ApprovalRequest.objects.exclude(status="pending").exists()
    from apps.policies.models import Policy

    assert list(Policy.objects.filter(tenant=world.tenant_a).values_list("mode", flat=True)) == [
        "enforce"
    ]
    from apps.budgets.models import Budget

    assert not Budget.objects.filter(tenant=world.tenant_a).exclude(max_tokens=1000).exists()
    from apps.memory.models import Document

    if route == "memory-document-detail":
        assert Document.objects.filter(tenant=world.tenant_a).count() == 1


def test_foreign_key_via_api_key_auth_is_404_too(world: World) -> None:
    from tests.conftest import client_for

    kwargs = _key(world)
    response = client_for(world.tenant_b).get(f"/api/v1/api-keys/{kwargs['key_id']}")
    assert response.status_code == 404


def test_lists_only_show_own_tenant(world: World, charlie_client: APIClient) -> None:
    api_key_create(tenant=world.tenant_a, name="a-only", scopes=["read"])
    members = charlie_client.get("/api/v1/members").json()
    assert {m["username"] for m in members["results"]} == {"charlie"}
    keys = charlie_client.get("/api/v1/api-keys").json()
    assert all(k["name"] != "a-only" for k in keys["results"])
    assert charlie_client.get("/api/v1/tenant").json()["slug"] == "globex"
    _mcp_server(world)
    _tool(world)
    assert charlie_client.get("/api/v1/mcp-servers").json()["results"] == []
    assert charlie_client.get("/api/v1/tools").json()["results"] == []
    _budget(world)
    from tests.budgets.conftest import usage_row

    usage_row(world.tenant_a)
    assert charlie_client.get("/api/v1/budgets").json()["results"] == []
    assert charlie_client.get("/api/v1/usage").json()["results"] == []
    assert charlie_client.get("/api/v1/usage?group_by=model").json()["results"] == []
