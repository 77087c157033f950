"""Policies over REST: CRUD with a version per save, compile errors with positions, size limit,
evaluate, permissions (operators read, admins write) and tenant isolation."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.policies.defaults import DEFAULT_POLICY_SOURCE
from apps.policies.models import Policy, PolicyVersion
from apps.tenants.models import Role
from tests.conftest import World, client_for
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

APPROVE_ALL = (
    "package warden\nimport rego.v1\n\n"
    'decision := {"allow": true, "require_approval": true, "reasons": ["ask"], "obligations": []}\n'
)
DENY_ALL = APPROVE_ALL.replace('"allow": true', '"allow": false')


def create(client: APIClient, **fields: Any) -> Any:
    body = {"name": "approve-all", "source": APPROVE_ALL, **fields}
    return client.post("/api/v1/policies", body, format="json")


def test_a_new_tenant_starts_with_the_default_policy(world: World) -> None:
    listed = client_for(world.tenant_a, ["admin"]).get("/api/v1/policies").json()["results"]
    assert [(p["name"], p["mode"], p["version"]) for p in listed] == [("default", "enforce", 1)]
    assert listed[0]["source"] == DEFAULT_POLICY_SOURCE
    assert listed[0]["entry_point"] == "data.warden.decision"


def test_every_save_is_a_new_immutable_version_with_author_and_time(
    world: World, alice_client: APIClient
) -> None:
    created = create(alice_client, mode="report_only", tool_name="word_count")
    assert created.status_code == 201, created.json()
    policy = created.json()
    assert (policy["version"], policy["mode"], policy["tool_name"]) == (
        1,
        "report_only",
        "word_count",
    )

    changed = alice_client.patch(
        f"/api/v1/policies/{policy['id']}", {"source": DENY_ALL}, format="json"
    )
    assert changed.status_code == 200
    assert changed.json()["version"] == 2 and changed.json()["source"] == DENY_ALL
    assert changed.json()["mode"] == "report_only"  # unchanged settings carry over
    key = client_for(world.tenant_a, ["admin"])
    moded = key.patch(f"/api/v1/policies/{policy['id']}", {"mode": "enforce"}, format="json")
    assert moded.json()["version"] == 3

    versions = alice_client.get(f"/api/v1/policies/{policy['id']}/versions").json()["results"]
    assert [(v["number"], v["mode"]) for v in versions] == [
        (3, "enforce"),
        (2, "report_only"),
        (1, "report_only"),
    ]
    assert [v["source"] for v in versions] == [DENY_ALL, DENY_ALL, APPROVE_ALL]
    assert versions[2]["author"] == "alice"
    assert versions[0]["author"].startswith("API key test (")
    assert all(v["created_at"] for v in versions)
    # History can't be rewritten, not even from code.
    first = PolicyVersion.objects.get(id=versions[2]["id"])
    first.source = DENY_ALL
    with pytest.raises(ValueError, match="immutable"):
        first.save()


def test_a_source_that_does_not_compile_is_refused_with_line_and_column(
    alice_client: APIClient,
) -> None:
    broken = "package warden\nimport rego.v1\n\ndecision if { input.a ==  }\n"
    response = create(alice_client, source=broken)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "policy_invalid"
    assert body["details"]["line"] == 4 and body["details"]["column"] == 23
    assert "boolean operator" in body["details"]["message"]
    assert "4:23" in body["message"]
    assert not Policy.objects.filter(name="approve-all").exists()


def test_a_bad_change_keeps_the_current_version(alice_client: APIClient) -> None:
    policy = create(alice_client).json()
    response = alice_client.patch(
        f"/api/v1/policies/{policy['id']}", {"entry_point": "data.warden.nope"}, format="json"
    )
    assert response.status_code == 400 and response.json()["code"] == "policy_invalid"
    again = alice_client.get(f"/api/v1/policies/{policy['id']}").json()
    assert again["version"] == 1 and again["entry_point"] == "data.warden.decision"


def test_an_oversized_source_is_refused(alice_client: APIClient, settings: Any) -> None:
    settings.WARDEN_POLICY_MAX_SOURCE_BYTES = 1024
    response = create(alice_client, source=APPROVE_ALL + "#" * 2000 + "\n")
    assert response.status_code == 400
    assert response.json()["code"] == "policy_too_large"
    assert response.json()["details"]["max_bytes"] == 1024


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "x"}, "validation_error"),
        ({"name": "x", "source": APPROVE_ALL, "mode": "sometimes"}, "validation_error"),
        ({"name": "x", "source": APPROVE_ALL, "agent_slug": "not a slug"}, "validation_error"),
        ({"name": "x", "source": APPROVE_ALL, "colour": "red"}, "unknown_field"),
        ({"name": "x", "source": "   "}, "policy_invalid"),
    ],
)
def test_bad_input_is_a_400_with_a_code(alice_client: APIClient, body: Any, code: str) -> None:
    response = alice_client.post("/api/v1/policies", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_a_taken_name_is_a_409(alice_client: APIClient) -> None:
    assert create(alice_client).status_code == 201
    response = create(alice_client)
    assert response.status_code == 409 and response.json()["code"] == "policy_name_taken"


def test_evaluate_returns_the_decision_for_a_hand_written_input(alice_client: APIClient) -> None:
    default = alice_client.get("/api/v1/policies").json()["results"][0]
    url = f"/api/v1/policies/{default['id']}/evaluate"
    high = {
        "tool": {"name": "rm", "risk_tier": "high"},
        "environment": "dev",
        "budget": {"tokens_used": 0, "tokens_limit": 10},
    }
    body = alice_client.post(url, {"input": high}, format="json").json()
    assert body["outcome"] == "require_approval"
    assert body["result"]["reasons"] == ["tool rm is high risk"]
    assert body["version"] == 1 and body["error"] is None and body["defined"] is True
    # An input the policy can't decide on: undefined is a deny that says so.
    empty = alice_client.post(url, {"input": {}}, format="json").json()
    assert empty["outcome"] == "deny" and empty["defined"] is False
    assert "malformed decision" in empty["result"]["reasons"][0]
    bad = alice_client.post(url, {"input": [1, 2]}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "validation_error"


def test_an_evaluation_that_runs_too_long_is_a_deny(alice_client: APIClient, settings: Any) -> None:
    runaway = (
        "package warden\nimport rego.v1\n\n"
        'decision := {"allow": count({1 | some x in numbers.range(1, input.n); '
        "some y in numbers.range(1, input.n)}) > 0}\n"
    )
    policy = create(alice_client, name="runaway", source=runaway).json()
    settings.WARDEN_POLICY_TIMEOUT_SECONDS = 0.5
    body = alice_client.post(
        f"/api/v1/policies/{policy['id']}/evaluate", {"input": {"n": 5000}}, format="json"
    ).json()
    assert body["outcome"] == "deny" and body["error"] == "timeout"
    assert "was stopped" in body["result"]["reasons"][0]
    assert "fail closed" in body["result"]["reasons"][0]


def test_delete_removes_the_policy_and_its_versions(alice_client: APIClient) -> None:
    policy = create(alice_client).json()
    assert alice_client.delete(f"/api/v1/policies/{policy['id']}").status_code == 204
    assert alice_client.get(f"/api/v1/policies/{policy['id']}").status_code == 404
    assert not PolicyVersion.objects.filter(policy_id=policy["id"]).exists()


# --------------------------------------------------------------------------- who may do what


def test_operators_read_and_evaluate_but_only_admins_write(world: World) -> None:
    operator = UserFactory(username="oscar")
    MembershipFactory(tenant=world.tenant_a, user=operator, role=Role.OPERATOR)
    client = APIClient()
    client.force_login(operator)
    default = client.get("/api/v1/policies")
    assert default.status_code == 200
    policy_id = default.json()["results"][0]["id"]
    assert client.get(f"/api/v1/policies/{policy_id}/versions").status_code == 200
    assert (
        client.post(
            f"/api/v1/policies/{policy_id}/evaluate", {"input": {}}, format="json"
        ).status_code
        == 200
    )
    for response in (
        create(client),
        client.patch(f"/api/v1/policies/{policy_id}", {"mode": "disabled"}, format="json"),
        client.delete(f"/api/v1/policies/{policy_id}"),
    ):
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
    assert Policy.objects.get(id=policy_id).mode == "enforce"
    # A write-scoped key acts as an operator: the same.
    assert create(client_for(world.tenant_a, ["write"])).status_code == 403


def test_members_viewers_and_approvers_cannot_read_policies(
    world: World, bob_client: APIClient
) -> None:
    approver = UserFactory(username="april")
    MembershipFactory(tenant=world.tenant_a, user=approver, role=Role.APPROVER)
    approver_client = APIClient()
    approver_client.force_login(approver)
    for client in (bob_client, approver_client, client_for(world.tenant_a, ["read"])):
        assert client.get("/api/v1/policies").status_code == 403


def test_charlie_has_no_access_to_acmes_policies(
    world: World, alice_client: APIClient, charlie_client: APIClient
) -> None:
    policy = create(alice_client).json()
    url = f"/api/v1/policies/{policy['id']}"
    names = [p["name"] for p in charlie_client.get("/api/v1/policies").json()["results"]]
    assert names == ["default"]  # Globex's own
    assert charlie_client.get(url).status_code == 404
    assert charlie_client.get(f"{url}/versions").status_code == 404
    assert charlie_client.post(f"{url}/evaluate", {"input": {}}, format="json").status_code == 404
    assert charlie_client.patch(url, {"source": DENY_ALL}, format="json").status_code == 404
    assert charlie_client.delete(url).status_code == 404
    assert alice_client.get(url).json()["version"] == 1
