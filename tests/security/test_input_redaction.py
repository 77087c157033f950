"""Model endpoint `options` can carry secret-bearing provider configuration (extra headers,
tokens), and a `base_url` credentials: only the tenant's admins read them back. Read-only keys,
write keys (operators) and members see which options are set, not their values."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.llm.services import endpoint_save
from tests.conftest import World, client_for

pytestmark = pytest.mark.django_db

SECRET = "sk-live-very-secret-token"
OPTIONS = {"extra_headers": {"Authorization": f"Bearer {SECRET}"}, "max_tokens_param": "x"}
BASE_URL = f"https://user:{SECRET}@llm.example.com/v1?api_key={SECRET}"


def _endpoint_views(client: APIClient, endpoint_id: Any) -> list[dict[str, Any]]:
    listed = client.get("/api/v1/model-endpoints")
    detail = client.get(f"/api/v1/model-endpoints/{endpoint_id}")
    assert listed.status_code == 200
    assert detail.status_code == 200
    return [listed.json()["results"][0], detail.json()]


def test_options_are_redacted_for_non_admins_and_visible_to_admins(
    world: World, bob_client: APIClient, alice_client: APIClient
) -> None:
    endpoint = endpoint_save(
        tenant=world.tenant_a,
        name="gpt",
        provider="openai",
        model="gpt-4o",
        base_url=BASE_URL,
        options=OPTIONS,
    )
    for client in (
        client_for(world.tenant_a, ["read"]),
        client_for(world.tenant_a, ["write"]),
        bob_client,  # a member
    ):
        for shown in _endpoint_views(client, endpoint.id):
            assert SECRET not in str(shown)
            assert shown["options"] == dict.fromkeys(OPTIONS, "[redacted]")
            assert shown["base_url"] == "https://[redacted]@llm.example.com/v1?[redacted]"

    # An operator may still change options, and does not get the secret echoed back.
    write = client_for(world.tenant_a, ["write"])
    changed = write.patch(
        f"/api/v1/model-endpoints/{endpoint.id}",
        {"options": {"extra_headers": {"X-Key": SECRET}}},
        format="json",
    )
    assert changed.status_code == 200
    assert SECRET not in str(changed.json())

    for client in (client_for(world.tenant_a, ["admin"]), alice_client):  # admin key, owner
        for shown in _endpoint_views(client, endpoint.id):
            assert shown["options"] == {"extra_headers": {"X-Key": SECRET}}
            assert shown["base_url"] == BASE_URL
            assert "api_key" not in shown  # the API key itself stays never-returned
