"""Integers beyond what their column holds are refused by the API (400, field named in
`details`) instead of reaching PostgreSQL and failing there with a 500; nothing is saved.
A DataError that still reaches the API is a 400 that says nothing about the database."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DataError, connection, transaction

from apps.agents.models import Agent
from apps.core.api.errors import exception_handler
from apps.llm.models import ModelEndpoint
from tests.agents.conftest import make_agent
from tests.conftest import World, client_for

pytestmark = pytest.mark.django_db

HUGE = 10**20


def _assert_refused(response: Any, field: str) -> None:
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in body["details"]


@pytest.mark.parametrize(
    "field",
    [
        "max_tokens_per_session",
        "max_input_tokens_per_turn",
        "max_output_tokens_per_turn",
    ],
)
@pytest.mark.parametrize("value", [HUGE, 2**31])
def test_agent_integers_beyond_the_column_are_refused(world: World, field: str, value: int) -> None:
    client = client_for(world.tenant_a)
    response = client.post(
        "/api/v1/agents", {"name": "Big", "slug": "big", field: value}, format="json"
    )
    _assert_refused(response, field)
    assert not Agent.objects.filter(tenant=world.tenant_a).exists()

    agent = make_agent(world.tenant_a, [{"final": "ok"}])
    before = getattr(agent, field)
    response = client.patch(f"/api/v1/agents/{agent.id}", {field: value}, format="json")
    _assert_refused(response, field)
    agent.refresh_from_db()
    assert getattr(agent, field) == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("context_window", HUGE),
        ("context_window", 2**31),
        ("priority", HUGE),
        ("priority", 2**31),
        ("priority", -(2**31) - 1),
    ],
)
def test_endpoint_integers_beyond_the_column_are_refused(
    world: World, field: str, value: int
) -> None:
    client = client_for(world.tenant_a)
    body = {"name": "big", "provider": "openai", "model": "m", field: value}
    _assert_refused(client.post("/api/v1/model-endpoints", body, format="json"), field)
    assert not ModelEndpoint.objects.filter(tenant=world.tenant_a).exists()

    created = client.post(
        "/api/v1/model-endpoints", {"name": "ok", "provider": "openai", "model": "m"}, format="json"
    )
    assert created.status_code == 201
    endpoint_id = created.json()["id"]
    response = client.patch(f"/api/v1/model-endpoints/{endpoint_id}", {field: value}, format="json")
    _assert_refused(response, field)
    assert getattr(ModelEndpoint.objects.get(id=endpoint_id), field) == created.json()[field]


def test_a_database_data_error_is_a_400_without_the_database_message() -> None:
    """The safety net: a value the database refuses, should a serializer miss a bound."""
    with pytest.raises(DataError) as refused, transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s::integer", [str(HUGE)])
    response = exception_handler(refused.value, {})
    assert response.status_code == 400
    assert response.data["code"] == "invalid_input"
    assert "integer" not in response.data["message"]
    assert str(HUGE) not in response.data["message"]
