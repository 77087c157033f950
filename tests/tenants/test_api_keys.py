from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.tenants.models import ApiKey
from apps.tenants.services import api_key_create
from tests.conftest import World, client_for

pytestmark = pytest.mark.django_db


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_key_is_shown_once_and_stored_hashed(alice_client: APIClient, world: World) -> None:
    created = alice_client.post(
        "/api/v1/api-keys", {"name": "ci", "scopes": ["read", "write"]}, format="json"
    )
    assert created.status_code == 201, created.json()
    raw = created.json()["key"]
    assert raw.startswith(f"wdn_{created.json()['prefix']}_")

    row = ApiKey.objects.get(id=created.json()["id"])
    assert row.hashed_key == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {str(v) for v in vars(row).values()}

    # Never again: neither the detail nor the list carries the secret.
    detail = alice_client.get(f"/api/v1/api-keys/{row.id}").json()
    listing = alice_client.get("/api/v1/api-keys").json()
    assert "key" not in detail
    assert all("key" not in item for item in listing["results"])
    assert raw not in str(listing)

    me = bearer(raw).get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["via"] == "api_key"
    assert me.json()["tenant"]["slug"] == "acme"
    assert me.json()["scopes"] == ["read", "write"]


def test_last_used_is_recorded(world: World) -> None:
    key, raw = api_key_create(tenant=world.tenant_a, name="k", scopes=["read"])
    assert key.last_used_at is None
    assert bearer(raw).get("/api/v1/tenant").status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_expired_key_is_refused(world: World) -> None:
    key, raw = api_key_create(
        tenant=world.tenant_a,
        name="k",
        scopes=["read"],
        expires_at=timezone.now() + timedelta(hours=1),
    )
    assert bearer(raw).get("/api/v1/me").status_code == 200
    ApiKey.objects.filter(id=key.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(raw).get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "api_key_expired"


def test_revoked_key_is_refused(alice_client: APIClient, world: World) -> None:
    key, raw = api_key_create(tenant=world.tenant_a, name="k", scopes=["read"])
    revoke = alice_client.post(f"/api/v1/api-keys/{key.id}/revoke")
    assert revoke.status_code == 200
    assert revoke.json()["revoked_at"] is not None
    response = bearer(raw).get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "api_key_revoked"


@pytest.mark.parametrize(
    "raw", ["wdn_deadbeef_nottherightsecret", "wdn_only-two", "sk-something", "wdn___"]
)
def test_bad_keys_are_refused_with_401(world: World, raw: str) -> None:
    api_key_create(tenant=world.tenant_a, name="k", scopes=["read"])
    response = bearer(raw).get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] in {"invalid_api_key", "invalid_token"}


def test_right_prefix_wrong_secret_is_refused(world: World) -> None:
    _, raw = api_key_create(tenant=world.tenant_a, name="k", scopes=["read"])
    tampered = raw[:-4] + ("AAAA" if not raw.endswith("AAAA") else "BBBB")
    response = bearer(tampered).get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"


def test_read_scope_cannot_write(world: World) -> None:
    client = client_for(world.tenant_a, scopes=["read"])
    assert client.get("/api/v1/members").status_code == 200
    response = client.post("/api/v1/members", {"username": "zed"}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_only_admin_scope_manages_keys(world: World) -> None:
    writer = client_for(world.tenant_a, scopes=["write"])
    assert writer.get("/api/v1/api-keys").status_code == 403
    admin = client_for(world.tenant_a, scopes=["admin"])
    assert admin.get("/api/v1/api-keys").status_code == 200


def test_members_may_not_manage_keys(bob_client: APIClient) -> None:
    response = bob_client.post(
        "/api/v1/api-keys", {"name": "x", "scopes": ["admin"]}, format="json"
    )
    assert response.status_code == 403


def test_expiry_in_the_past_is_refused(alice_client: APIClient) -> None:
    response = alice_client.post(
        "/api/v1/api-keys",
        {"name": "x", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "expiry_in_past"


def test_unknown_scope_is_refused(alice_client: APIClient) -> None:
    response = alice_client.post(
        "/api/v1/api-keys", {"name": "x", "scopes": ["root"]}, format="json"
    )
    assert response.status_code == 400
    assert "scopes" in response.json()["details"]
