"""Membership by invitation only: a tenant admin can't attach existing accounts, can't read
other people's e-mails, and only owners make owners."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from apps.tenants.models import Invitation, Membership
from tests.conftest import World, client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def signed_in(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def invite(client: APIClient, **body: Any) -> Any:
    return client.post("/api/v1/invitations", body, format="json")


def accept(client: APIClient, token: str) -> Any:
    return client.post("/api/v1/invitations/accept", {"token": token}, format="json")


def test_admin_invites_and_another_signed_in_user_joins(
    world: World, alice_client: APIClient
) -> None:
    created = invite(alice_client, role="operator", email="dora@example.org")
    assert created.status_code == 201, created.json()
    body = created.json()
    token = body["token"]
    assert body["status"] == "pending" and body["role"] == "operator"
    # Only the hash is stored, and the token never shows up again.
    row = Invitation.objects.get(id=body["id"])
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(alice_client.get("/api/v1/invitations").content)
    assert "token" not in alice_client.get(f"/api/v1/invitations/{row.id}").json()

    dora = UserFactory(username="dora")
    joined = accept(signed_in(dora), token)
    assert joined.status_code == 201, joined.json()
    assert joined.json()["tenant"]["slug"] == "acme"
    assert Membership.objects.get(tenant=world.tenant_a, user=dora).role == "operator"
    me = signed_in(dora).get("/api/v1/me").json()
    assert me["tenant"]["slug"] == "acme" and me["roles"] == ["operator"]
    assert alice_client.get(f"/api/v1/invitations/{row.id}").json()["status"] == "accepted"


def test_an_admin_api_key_can_invite_too(world: World) -> None:
    created = invite(client_for(world.tenant_a, ["admin"]), role="member")
    assert created.status_code == 201
    writer = invite(client_for(world.tenant_a, ["write"]), role="member")
    assert writer.status_code == 403


def test_invitation_is_single_use(world: World, alice_client: APIClient) -> None:
    token = invite(alice_client).json()["token"]
    assert accept(signed_in(UserFactory(username="dora")), token).status_code == 201
    again = accept(signed_in(UserFactory(username="eve")), token)
    assert again.status_code == 409
    assert again.json()["code"] == "invitation_used"
    assert not Membership.objects.filter(user__username="eve").exists()


def test_expired_invitation_is_refused(world: World, alice_client: APIClient) -> None:
    soon = (timezone.now() + timedelta(minutes=5)).isoformat()
    body = invite(alice_client, expires_at=soon).json()
    # Time passes: the invitation's expiry is now behind us.
    Invitation.objects.filter(id=body["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = accept(signed_in(UserFactory(username="dora")), body["token"])
    assert response.status_code == 409
    assert response.json()["code"] == "invitation_expired"
    assert not Membership.objects.filter(user__username="dora").exists()
    past = invite(alice_client, expires_at="2001-01-01T00:00:00Z")
    assert past.status_code == 400
    assert past.json()["code"] == "expiry_in_past"


def test_revoked_invitation_is_refused(world: World, alice_client: APIClient) -> None:
    body = invite(alice_client).json()
    revoked = alice_client.delete(f"/api/v1/invitations/{body['id']}")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    response = accept(signed_in(UserFactory(username="dora")), body["token"])
    assert response.status_code == 409
    assert response.json()["code"] == "invitation_revoked"


def test_unknown_token_is_404(world: World) -> None:
    response = accept(signed_in(UserFactory(username="dora")), "wdi_" + "x" * 43)
    assert response.status_code == 404
    assert response.json()["code"] == "invitation_not_found"


def test_other_tenants_cannot_see_or_revoke_invitations(
    world: World, alice_client: APIClient, charlie_client: APIClient
) -> None:
    body = invite(alice_client).json()
    assert charlie_client.get("/api/v1/invitations").json()["results"] == []
    for client in (charlie_client, client_for(world.tenant_b, ["admin"])):
        assert client.delete(f"/api/v1/invitations/{body['id']}").status_code == 404
        assert client.get(f"/api/v1/invitations/{body['id']}").status_code == 404
    assert Invitation.objects.get(id=body["id"]).revoked_at is None


def test_only_a_signed_in_person_accepts_never_an_api_key(
    world: World, alice_client: APIClient
) -> None:
    token = invite(alice_client, role="admin").json()["token"]
    # Tenant B's admin key (created by charlie) must not pull charlie into tenant A.
    from apps.tenants.services import api_key_create

    _, raw = api_key_create(
        tenant=world.tenant_b, name="b", scopes=["admin"], created_by=world.charlie
    )
    key_client = APIClient()
    key_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert accept(key_client, token).status_code == 403
    assert accept(APIClient(), token).status_code == 401
    assert not Membership.objects.filter(tenant=world.tenant_a, user=world.charlie).exists()


def test_attaching_an_existing_account_by_username_is_refused(
    world: World, alice_client: APIClient
) -> None:
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    for username in ("charlie", "root", "brand-new"):
        response = alice_client.post(
            "/api/v1/members", {"username": username, "role": "admin"}, format="json"
        )
        assert response.status_code == 405
        assert response["Allow"] == "GET, HEAD, OPTIONS"
        assert response.json()["code"] == "use_invitations"
        assert "invitations" in response.json()["message"]
    assert not Membership.objects.filter(tenant=world.tenant_a, user__in=[world.charlie, root])
    assert not Membership.objects.filter(user__username="brand-new").exists()
    key = client_for(world.tenant_a, ["admin"])
    response = key.post("/api/v1/members", {"username": "charlie"}, format="json")
    assert response.json()["code"] == "use_invitations"


def test_console_tenant_admin_cannot_attach_an_existing_user(world: World) -> None:
    alice = Client()
    alice.force_login(world.alice)
    response = alice.post(
        "/admin/tenants/membership/add/",
        {"tenant": world.tenant_a.id, "user": world.charlie.id, "role": "owner"},
    )
    assert response.status_code == 403
    assert not Membership.objects.filter(tenant=world.tenant_a, user=world.charlie).exists()
    # The platform operator still can.
    root = Client()
    root.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    response = root.post(
        "/admin/tenants/membership/add/",
        {"tenant": world.tenant_a.id, "user": world.charlie.id, "role": "member"},
    )
    assert response.status_code == 302
    assert Membership.objects.filter(tenant=world.tenant_a, user=world.charlie).exists()


def test_console_invitation_shows_its_token_once(world: World) -> None:
    alice = Client()
    alice.force_login(world.alice)
    response = alice.post(
        "/admin/tenants/invitation/add/",
        {
            "tenant": world.tenant_a.id,
            "role": "member",
            "email": "",
            "expires_at_0": (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%d"),
            "expires_at_1": "12:00:00",
        },
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    token = next(m.rsplit(" ", 1)[1] for m in shown if "wdi_" in m)
    assert accept(signed_in(UserFactory(username="dora")), token).status_code == 201


def test_no_email_of_other_users_in_members_responses(
    world: World, alice_client: APIClient
) -> None:
    bob_id = Membership.objects.get(tenant=world.tenant_a, user=world.bob).id
    for client in (alice_client, client_for(world.tenant_a, ["admin"])):
        for url in ("/api/v1/members", f"/api/v1/members/{bob_id}"):
            response = client.get(url)
            assert response.status_code == 200
            assert b"@example.com" not in response.content, url
        changed = client.patch(f"/api/v1/members/{bob_id}", {"role": "viewer"}, format="json")
        assert b"@example.com" not in changed.content


def test_console_tenant_admin_cannot_search_members_by_email(world: World) -> None:
    alice = Client()
    alice.force_login(world.alice)
    page = alice.get("/admin/tenants/membership/", {"q": "bob@example.com"})
    assert page.status_code == 200
    # No match means a guessed address can't be confirmed.
    assert page.context["cl"].result_count == 0
    assert alice.get("/admin/tenants/membership/", {"q": "bob"}).context["cl"].result_count == 1


def _make_admin(world: World, user: Any) -> None:
    Membership.objects.filter(tenant=world.tenant_a, user=user).update(role="admin")


def test_admin_key_and_admin_member_cannot_grant_owner(world: World) -> None:
    _make_admin(world, world.bob)
    bob_membership = Membership.objects.get(tenant=world.tenant_a, user=world.bob)
    alice_membership = Membership.objects.get(tenant=world.tenant_a, user=world.alice)
    for client in (client_for(world.tenant_a, ["admin"]), signed_in(world.bob)):
        promote = client.patch(
            f"/api/v1/members/{bob_membership.id}", {"role": "owner"}, format="json"
        )
        assert promote.status_code == 403
        assert promote.json()["code"] == "owner_required"
        owner_invite = invite(client, role="owner")
        assert owner_invite.status_code == 403
        assert owner_invite.json()["code"] == "owner_required"
        # Nor can they demote or remove an owner.
        demote = client.patch(
            f"/api/v1/members/{alice_membership.id}", {"role": "member"}, format="json"
        )
        assert demote.status_code == 403
        assert client.delete(f"/api/v1/members/{alice_membership.id}").status_code == 403
    bob_membership.refresh_from_db()
    alice_membership.refresh_from_db()
    assert (bob_membership.role, alice_membership.role) == ("admin", "owner")
    assert not Invitation.objects.filter(role="owner").exists()


def test_console_admin_cannot_grant_owner(world: World) -> None:
    _make_admin(world, world.bob)
    world.bob.is_staff = True
    world.bob.save()
    bob_membership = Membership.objects.get(tenant=world.tenant_a, user=world.bob)
    bob = Client()
    bob.force_login(world.bob)
    response = bob.post(f"/admin/tenants/membership/{bob_membership.id}/change/", {"role": "owner"})
    assert response.status_code == 200  # the form comes back with the error
    assert b"Only an owner" in response.content
    bob_membership.refresh_from_db()
    assert bob_membership.role == "admin"


def test_owner_can_grant_owner(world: World, alice_client: APIClient) -> None:
    bob_membership = Membership.objects.get(tenant=world.tenant_a, user=world.bob)
    promote = alice_client.patch(
        f"/api/v1/members/{bob_membership.id}", {"role": "owner"}, format="json"
    )
    assert promote.status_code == 200
    assert promote.json()["role"] == "owner"
    owner_invite = invite(alice_client, role="owner")
    assert owner_invite.status_code == 201
    dora = UserFactory(username="dora")
    assert accept(signed_in(dora), owner_invite.json()["token"]).status_code == 201
    assert Membership.objects.get(tenant=world.tenant_a, user=dora).role == "owner"
