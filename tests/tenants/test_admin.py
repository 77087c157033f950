"""The console: a tenant admin who is not a superuser sees and edits only their tenant's rows."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.tenants.models import ApiKey, Membership
from apps.tenants.services import api_key_create
from tests.conftest import World
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def login(user: object) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_tenant_admin_sees_only_own_rows(world: World) -> None:
    api_key_create(tenant=world.tenant_a, name="acme-key", scopes=["read"])
    api_key_create(tenant=world.tenant_b, name="globex-key", scopes=["read"])
    alice = login(world.alice)

    keys = alice.get("/admin/tenants/apikey/")
    assert keys.status_code == 200
    assert b"acme-key" in keys.content
    assert b"globex-key" not in keys.content

    tenants = alice.get("/admin/tenants/tenant/")
    assert b"Acme" in tenants.content
    assert b"Globex" not in tenants.content


def test_tenant_admin_cannot_open_or_change_foreign_rows(world: World) -> None:
    foreign, _ = api_key_create(tenant=world.tenant_b, name="globex-key", scopes=["read"])
    foreign_member = Membership.objects.get(tenant=world.tenant_b, user=world.charlie)
    alice = login(world.alice)
    # A row outside the queryset is a 404 (the scoping mixin), as for no row at all.
    for url in (
        f"/admin/tenants/apikey/{foreign.id}/change/",
        f"/admin/tenants/membership/{foreign_member.id}/change/",
        f"/admin/tenants/tenant/{world.tenant_b.id}/change/",
    ):
        response = alice.get(url)
        assert response.status_code == 404, url
    response = alice.post(
        f"/admin/tenants/membership/{foreign_member.id}/change/",
        {"tenant": world.tenant_b.id, "user": world.alice.id, "role": "owner"},
    )
    foreign_member.refresh_from_db()
    assert foreign_member.user == world.charlie


def test_tenant_admin_cannot_create_rows_in_a_foreign_tenant(world: World) -> None:
    alice = login(world.alice)
    response = alice.post(
        "/admin/tenants/apikey/add/",
        {"tenant": world.tenant_b.id, "name": "sneaky", "scopes": ["read"]},
    )
    assert response.status_code == 200  # the form comes back with an error
    assert b"Select a valid choice" in response.content
    assert not ApiKey.objects.filter(name="sneaky").exists()


def test_api_key_created_in_admin_is_shown_once_via_the_service(world: World) -> None:
    alice = login(world.alice)
    response = alice.post(
        "/admin/tenants/apikey/add/",
        {"tenant": world.tenant_a.id, "name": "from-console", "scopes": ["read", "write"]},
        follow=True,
    )
    assert response.status_code == 200
    key = ApiKey.objects.get(name="from-console")
    assert key.scopes == ["read", "write"]
    assert key.created_by == world.alice
    shown = [str(m) for m in response.context["messages"]]
    assert any(f"wdn_{key.prefix}_" in m for m in shown)


def test_plain_members_and_non_staff_get_no_console(world: World) -> None:
    bob = login(world.bob)  # member, not staff
    assert bob.get("/admin/tenants/apikey/").status_code == 302
    staff_member = UserFactory(username="staffer", is_staff=True)
    Membership.objects.create(tenant=world.tenant_a, user=staff_member, role="member")
    response = login(staff_member).get("/admin/tenants/apikey/")
    assert response.status_code == 403


def test_superuser_sees_everything(world: World) -> None:
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    api_key_create(tenant=world.tenant_b, name="globex-key", scopes=["read"])
    assert b"globex-key" in login(root).get("/admin/tenants/apikey/").content
