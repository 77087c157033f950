"""The API takes what its OpenAPI schema says, and refuses the rest with a 400.

Schemathesis (test_openapi_contract.py) explores this broadly; these are the rules it found
broken, one readable case each.
"""

from __future__ import annotations

from typing import Any

import pytest

from apps.tenants.services import api_key_create
from tests.conftest import World, client_for

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "A", "slug": "a", "max_steps": "5"}, "max_steps"),  # a string for a number
        ({"name": "A", "slug": "a", "is_active": 1}, "is_active"),  # 1 for true
        ({"name": 5, "slug": "a"}, "name"),  # a number for a string
        ({"name": "A", "slug": "a", "allowed_endpoints": [7]}, "allowed_endpoints"),  # int UUID
        ({"name": "A", "slug": "a", "allowed_tools": "clock"}, "allowed_tools"),  # not a list
        # The length counts what was sent, before trimming.
        ({"name": "A" + " " * 200, "slug": "a"}, "name"),
    ],
)
def test_values_of_another_json_type_are_refused_not_coerced(
    world: World, body: dict[str, Any], field: str
) -> None:
    response = client_for(world.tenant_a).post("/api/v1/agents", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert field in response.json()["details"]


def test_decimals_are_strings_of_the_documented_form(world: World) -> None:
    client = client_for(world.tenant_a)
    base = {"name": "ep", "provider": "scripted", "model": "m"}
    for price in ("", "1e3", 2.5, "-1", "1.23456"):
        response = client.post(
            "/api/v1/model-endpoints", {**base, "price_input_per_mtok": price}, format="json"
        )
        assert response.status_code == 400, price
        assert "price_input_per_mtok" in response.json()["details"]
    response = client.post(
        "/api/v1/model-endpoints", {**base, "price_input_per_mtok": "2.50"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["price_input_per_mtok"] == "2.5000"


@pytest.mark.parametrize("query", ["page_size=null", "page_size=0", "page=-1", "page=last"])
def test_malformed_page_parameters_are_400s(world: World, query: str) -> None:
    response = client_for(world.tenant_a).get(f"/api/v1/api-keys?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_pages_are_cut_to_the_maximum_and_a_page_past_the_last_is_404(world: World) -> None:
    client = client_for(world.tenant_a)
    for n in range(3):
        api_key_create(tenant=world.tenant_a, name=f"k{n}", scopes=["read"])
    page = client.get("/api/v1/api-keys?page_size=100000").json()
    assert page["count"] == 4 and len(page["results"]) == 4
    second = client.get("/api/v1/api-keys?page_size=3&page=2").json()
    assert len(second["results"]) == 1
    past = client.get("/api/v1/api-keys?page_size=3&page=3")
    assert past.status_code == 404
    assert past.json()["code"] == "not_found"


@pytest.mark.parametrize("query", ["enabled=", "source=", "server=", "enabled=maybe"])
def test_empty_or_malformed_filters_are_400s_not_no_filter(world: World, query: str) -> None:
    response = client_for(world.tenant_a).get(f"/api/v1/tools?{query}")
    assert response.status_code == 400


def test_posting_a_member_is_405_use_invitations(world: World) -> None:
    response = client_for(world.tenant_a).post(
        "/api/v1/members", {"username": "bob"}, format="json"
    )
    assert response.status_code == 405
    assert response.json()["code"] == "use_invitations"
    assert "POST" not in response["Allow"]


def test_patching_a_member_with_nothing_changes_nothing(world: World) -> None:
    client = client_for(world.tenant_a)
    member = next(
        m for m in client.get("/api/v1/members").json()["results"] if m["role"] == "member"
    )
    response = client.patch(f"/api/v1/members/{member['id']}", {}, format="json")
    assert response.status_code == 200
    assert response.json()["role"] == "member"


def test_deleting_an_api_key_answers_the_revoked_key(world: World) -> None:
    client = client_for(world.tenant_a)
    key, _ = api_key_create(tenant=world.tenant_a, name="old", scopes=["read"])
    response = client.delete(f"/api/v1/api-keys/{key.id}")
    assert response.status_code == 200
    assert response.json()["revoked_at"] is not None
    # The revoke route takes only POST (it used to answer GET and DELETE as well).
    assert client.get(f"/api/v1/api-keys/{key.id}/revoke").status_code == 405
