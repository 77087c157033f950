"""GET /api/v1/usage: tokens and cost per day, model, agent or user, for the caller's tenant
only, over a window that must be one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from apps.budgets.models import TenantBudgetSettings, UsageKind
from tests.budgets.conftest import usage_row
from tests.conftest import World

pytestmark = pytest.mark.django_db

API = "/api/v1/usage"
DAY1 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
DAY2 = datetime(2025, 3, 2, 23, 59, tzinfo=UTC)
WINDOW = "from=2025-03-01&to=2025-03-03"


@pytest.fixture
def ledger_rows(world: World) -> dict[str, uuid.UUID]:
    helper, writer = uuid.uuid4(), uuid.uuid4()
    a = world.tenant_a
    usage_row(
        a,
        created_at=DAY1,
        agent_id=helper,
        agent_slug="helper",
        user=world.alice,
        endpoint_name="big",
        model="gpt-big",
        input_tokens=1000,
        output_tokens=200,
        cost="0.012",
    )
    usage_row(
        a,
        created_at=DAY1,
        agent_id=writer,
        agent_slug="writer",
        user=world.bob,
        endpoint_name="small",
        model="gpt-small",
        input_tokens=100,
        output_tokens=50,
        cost="0.000015",
        estimated=True,
    )
    usage_row(
        a,
        created_at=DAY2,
        agent_id=helper,
        agent_slug="helper",
        user=world.alice,
        endpoint_name="big",
        model="gpt-big",
        input_tokens=10,
        output_tokens=0,
        cost="0.5",
        kind=UsageKind.EXPIRED_RESERVATION,
        estimated=True,
    )
    # Outside the window, and another tenant's: never counted.
    usage_row(a, created_at=DAY1 - timedelta(days=1), cost="100")
    usage_row(a, created_at=datetime(2025, 3, 3, tzinfo=UTC), cost="100")
    usage_row(world.tenant_b, created_at=DAY1, endpoint_name="big", cost="100", user=world.charlie)
    return {"helper": helper, "writer": writer}


def rows(client: APIClient, query: str) -> list[dict[str, object]]:
    response = client.get(f"{API}?{query}")
    assert response.status_code == 200, response.json()
    return list(response.json()["results"])


def test_usage_per_day(alice_client: APIClient, ledger_rows: dict[str, uuid.UUID]) -> None:
    assert rows(alice_client, f"group_by=day&{WINDOW}") == [
        {
            "group": "2025-03-01",
            "label": "",
            "calls": 2,
            "input_tokens": 1100,
            "output_tokens": 250,
            "tokens": 1350,
            "cost": "0.012015",
            "estimated_calls": 1,
            "currency": "USD",
        },
        {
            "group": "2025-03-02",
            "label": "",
            "calls": 1,
            "input_tokens": 10,
            "output_tokens": 0,
            "tokens": 10,
            "cost": "0.500000",
            "estimated_calls": 1,  # a dead worker's hold, charged
            "currency": "USD",
        },
    ]


def test_usage_per_model_agent_and_user(
    world: World, alice_client: APIClient, ledger_rows: dict[str, uuid.UUID]
) -> None:
    TenantBudgetSettings.objects.create(tenant=world.tenant_a, currency="EUR")
    per_model = rows(alice_client, f"group_by=model&{WINDOW}")
    assert [(r["group"], r["label"], r["calls"], r["cost"], r["currency"]) for r in per_model] == [
        ("big", "gpt-big", 2, "0.512000", "EUR"),
        ("small", "gpt-small", 1, "0.000015", "EUR"),
    ]
    per_agent = {r["label"]: r for r in rows(alice_client, f"group_by=agent&{WINDOW}")}
    assert per_agent["helper"]["group"] == str(ledger_rows["helper"])
    assert (per_agent["helper"]["tokens"], per_agent["writer"]["tokens"]) == (1210, 150)
    per_user = rows(alice_client, f"group_by=user&{WINDOW}")
    assert [(r["group"], r["tokens"]) for r in per_user] == [("alice", 1210), ("bob", 150)]


def test_the_window_defaults_to_the_last_30_days(world: World, alice_client: APIClient) -> None:
    usage_row(world.tenant_a, input_tokens=7, output_tokens=0)
    usage_row(world.tenant_a, created_at=datetime.now(UTC) - timedelta(days=31), cost="9")
    today = rows(alice_client, "")
    assert [(r["group"], r["tokens"]) for r in today] == [(datetime.now(UTC).date().isoformat(), 7)]
    assert rows(alice_client, "group_by=day&from=2020-01-01T00:00:00Z&to=2020-01-02") == []


def test_another_tenant_sees_none_of_it(
    charlie_client: APIClient, ledger_rows: dict[str, uuid.UUID]
) -> None:
    theirs = rows(charlie_client, f"group_by=user&{WINDOW}")
    assert [(r["group"], r["cost"]) for r in theirs] == [("charlie", "100.000000")]


@pytest.mark.parametrize(
    "query",
    [
        "from=2025-03-02&to=2025-03-01",  # backwards
        "from=2025-03-01&to=2025-03-01",  # empty
        "from=2024-01-01&to=2025-03-01",  # over 366 days
        "to=0001-01-05",  # its default start is before the first day there is
        "from=2025-13-01",
        "from=yesterday",
        "to=2025-02-30T10:00:00Z",
        "to=9999-12-31T23:00:00-05:00",
    ],
)
def test_a_window_that_isnt_one_is_invalid_range(alice_client: APIClient, query: str) -> None:
    response = alice_client.get(f"{API}?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_range"


def test_a_bad_group_or_page_is_a_validation_error(alice_client: APIClient) -> None:
    for query in ("group_by=tool", "group_by=", "page=0", "page_size=x"):
        response = alice_client.get(f"{API}?{query}")
        assert response.status_code == 400, query
        assert response.json()["code"] == "validation_error"


def test_usage_pages(world: World, alice_client: APIClient) -> None:
    for day in range(3):
        usage_row(world.tenant_a, created_at=DAY1 + timedelta(days=day))
    page = alice_client.get(f"{API}?from=2025-03-01&to=2025-03-05&page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
