from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.tenants.models import Membership
from tests.conftest import World
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_me_and_tenant_for_a_console_session(alice_client: APIClient) -> None:
    me = alice_client.get("/api/v1/me").json()
    assert me["via"] == "session"
    assert me["user"]["username"] == "alice"
    assert me["roles"] == ["owner"]
    assert alice_client.get("/api/v1/tenant").json()["slug"] == "acme"


def test_tenant_header_picks_among_memberships(world: World, alice_client: APIClient) -> None:
    Membership.objects.create(tenant=world.tenant_b, user=world.alice, role="viewer")
    me = alice_client.get("/api/v1/me", HTTP_X_WARDEN_TENANT="globex").json()
    assert me["tenant"]["slug"] == "globex"
    assert me["roles"] == ["viewer"]


def test_header_for_a_foreign_tenant_is_refused(bob_client: APIClient) -> None:
    response = bob_client.get("/api/v1/me", HTTP_X_WARDEN_TENANT="globex")
    assert response.status_code == 403


def _invite_and_accept(inviter: APIClient, user: object, role: str = "member") -> dict:
    token = inviter.post("/api/v1/invitations", {"role": role}, format="json").json()["token"]
    client = APIClient()
    client.force_login(user)
    joined = client.post("/api/v1/invitations/accept", {"token": token}, format="json")
    assert joined.status_code == 201, joined.json()
    return joined.json()


def test_admin_adds_changes_and_removes_a_member(alice_client: APIClient) -> None:
    dora = UserFactory(username="dora")
    member_id = _invite_and_accept(alice_client, dora, role="approver")["id"]
    listing = alice_client.get("/api/v1/members").json()
    assert listing["count"] == 3
    assert {m["username"] for m in listing["results"]} == {"alice", "bob", "dora"}

    changed = alice_client.patch(
        f"/api/v1/members/{member_id}", {"role": "operator"}, format="json"
    )
    assert changed.json()["role"] == "operator"
    assert alice_client.delete(f"/api/v1/members/{member_id}").status_code == 204
    assert alice_client.get(f"/api/v1/members/{member_id}").status_code == 404


def test_accepting_twice_as_a_member_is_a_conflict(world: World, alice_client: APIClient) -> None:
    token = alice_client.post("/api/v1/invitations", {}, format="json").json()["token"]
    bob = APIClient()
    bob.force_login(world.bob)
    response = bob.post("/api/v1/invitations/accept", {"token": token}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "already_member"


def test_last_owner_cannot_leave_or_be_demoted(world: World, alice_client: APIClient) -> None:
    owner = Membership.objects.get(tenant=world.tenant_a, user=world.alice)
    demote = alice_client.patch(f"/api/v1/members/{owner.id}", {"role": "member"}, format="json")
    assert demote.status_code == 409
    assert demote.json()["code"] == "last_owner"
    assert alice_client.delete(f"/api/v1/members/{owner.id}").status_code == 409
    owner.refresh_from_db()
    assert owner.role == "owner"


def test_members_read_but_do_not_change_membership(world: World, bob_client: APIClient) -> None:
    assert bob_client.get("/api/v1/members").status_code == 200
    response = bob_client.post("/api/v1/invitations", {"role": "member"}, format="json")
    assert response.status_code == 403


def test_pagination(alice_client: APIClient) -> None:
    for i in range(3):
        _invite_and_accept(alice_client, UserFactory(username=f"p{i}"))
    page = alice_client.get("/api/v1/members?page_size=2").json()
    assert page["count"] == 5
    assert len(page["results"]) == 2
    assert page["next"] is not None
    second = alice_client.get("/api/v1/members?page_size=2&page=3").json()
    assert len(second["results"]) == 1


def test_invalid_role_is_a_validation_error(alice_client: APIClient) -> None:
    response = alice_client.post("/api/v1/invitations", {"role": "god"}, format="json")
    assert response.status_code == 400
    assert "role" in response.json()["details"]
