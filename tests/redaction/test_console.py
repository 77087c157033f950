"""The console's redaction settings: same checks as the API, for the admin's own tenant only."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from apps.tenants.models import RedactionSettings
from tests.conftest import World

pytestmark = pytest.mark.django_db(transaction=True)
ADD = "/admin/tenants/redactionsettings/add/"


def login(user: object) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _form(tenant: object, patterns: object) -> dict[str, object]:
    return {
        "tenant": tenant,
        "enabled": "on",
        "kinds": ["email", "card"],
        "custom_patterns": json.dumps(patterns),
    }


def test_a_hostile_pattern_is_refused_a_good_one_saved(world: World) -> None:
    alice = login(world.alice)
    hostile = [{"name": "evil", "pattern": "(x+x+)+y"}]
    response = alice.post(ADD, _form(world.tenant_a.id, hostile))
    assert response.status_code == 200  # the form comes back with the error
    assert b"nests quantifiers" in response.content
    assert not RedactionSettings.objects.exists()

    good = [{"name": "employee_id", "pattern": r"EMP-\d{6}"}]
    response = alice.post(ADD, _form(world.tenant_a.id, good))
    assert response.status_code == 302, response.content[:2000]
    row = RedactionSettings.objects.get(tenant=world.tenant_a)
    assert row.kinds == ["card", "email"] and row.custom_patterns == good


def test_an_admin_cannot_configure_another_tenant(world: World) -> None:
    alice = login(world.alice)
    response = alice.post(ADD, _form(world.tenant_b.id, []))
    assert response.status_code == 200
    assert b"Select a valid choice" in response.content
    assert not RedactionSettings.objects.filter(tenant=world.tenant_b).exists()
