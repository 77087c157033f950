"""Budgets over REST: CRUD, every kind of bad input with its stable code, roles (operators
read, admins write), the current period's figures from the ledger and Redis, and that a saved
budget is a cap the ledger applies."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.budgets.ledger.types import to_micros
from apps.budgets.models import Budget, TenantBudgetSettings
from apps.budgets.services import ledger
from apps.tenants.models import Role
from tests.budgets.conftest import usage_row
from tests.conftest import World, client_for
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

API = "/api/v1/budgets"


def create(client: APIClient, **fields: Any) -> Any:
    body = {"scope": "tenant", "period": "day", "max_cost": "10.50", **fields}
    return client.post(API, body, format="json")


def make_agent(tenant: Any, slug: str = "helper") -> Any:
    from tests.agents.conftest import make_agent as make

    return make(tenant, [{"final": "ok"}], slug=slug)


def test_an_admin_creates_reads_changes_and_deletes_a_budget(
    world: World, alice_client: APIClient, prefix: str
) -> None:
    created = create(alice_client, max_tokens=50_000)
    assert created.status_code == 201, created.json()
    budget = created.json()
    assert {k: budget[k] for k in ("scope", "agent", "user", "period", "max_tokens")} == {
        "scope": "tenant",
        "agent": None,
        "user": None,
        "period": "day",
        "max_tokens": 50_000,
    }
    assert budget["max_cost"] == "10.5000" and budget["currency"] == "USD"
    assert budget["obligations"] == ["small_tier", "compress_context", "trim_tools"]
    assert budget["is_active"] is True

    listed = alice_client.get(API).json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == budget["id"]

    detail = alice_client.get(f"{API}/{budget['id']}").json()
    today = datetime.now(UTC).date()
    assert detail["current_period"]["start"].startswith(today.isoformat())
    assert (detail["spent_tokens"], detail["spent_cost"], detail["reserved_tokens"]) == (
        0,
        "0.000000",
        0,
    )
    assert detail["state"] == "ok" and detail["fraction_used"] == 0

    changed = alice_client.patch(
        f"{API}/{budget['id']}",
        {"max_tokens": None, "obligations": [], "is_active": False},
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    assert (changed.json()["max_tokens"], changed.json()["obligations"]) == (None, [])
    stored = Budget.objects.get(id=budget["id"])
    assert (stored.max_tokens, stored.is_active, str(stored.max_cost)) == (None, False, "10.5000")

    assert alice_client.delete(f"{API}/{budget['id']}").status_code == 204
    gone = alice_client.get(f"{API}/{budget['id']}")
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"


def test_the_period_defaults_to_the_scopes_and_the_currency_is_the_tenants(
    world: World, alice_client: APIClient
) -> None:
    TenantBudgetSettings.objects.create(tenant=world.tenant_a, currency="EUR")
    session = alice_client.post(API, {"scope": "session", "max_tokens": 40_000}, format="json")
    assert session.status_code == 201, session.json()
    assert (session.json()["period"], session.json()["currency"]) == ("session", "EUR")
    user = alice_client.post(
        API, {"scope": "user", "user": "bob", "max_cost": "2", "obligations": []}, format="json"
    )
    assert user.status_code == 201, user.json()
    assert (user.json()["period"], user.json()["user"], user.json()["obligations"]) == (
        "day",
        "bob",
        [],
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_cost": "0"}, "max_cost"),
        ({"max_cost": "-1"}, "max_cost"),
        ({"max_cost": "0.00001"}, "max_cost"),  # more places than money has here
        ({"max_cost": "1e3"}, "max_cost"),
        ({"max_cost": "NaN"}, "max_cost"),
        ({"max_cost": "1000000000.0001"}, "max_cost"),  # absurd: over 10^9
        ({"max_cost": 10.5}, "max_cost"),  # a number, not a decimal string
        ({"max_cost": None, "max_tokens": 0}, "max_tokens"),
        ({"max_cost": None, "max_tokens": -5}, "max_tokens"),
        ({"max_cost": None, "max_tokens": 10**12 + 1}, "max_tokens"),
        ({"max_cost": None, "max_tokens": "100"}, "max_tokens"),
        ({"scope": "galaxy"}, "scope"),
        ({"period": "week"}, "period"),
        ({"obligations": ["pray"]}, "obligations"),
        ({"agent": "not-a-uuid", "scope": "agent"}, "agent"),
    ],
)
def test_zero_negative_absurd_and_malformed_caps_are_validation_errors(
    world: World, alice_client: APIClient, fields: dict[str, Any], field: str
) -> None:
    response = create(alice_client, **fields)
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert field in response.json()["details"]
    assert not Budget.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_cost": None}, "max_tokens"),  # no cap at all
        ({"scope": "tenant", "period": "session"}, "period"),
        ({"scope": "session", "period": "day"}, "period"),
        ({"scope": "turn", "period": "month"}, "period"),
        ({"scope": "agent"}, "agent"),  # an agent budget without its agent
        ({"scope": "tenant", "agent": str(uuid.uuid4())}, "agent"),
        ({"scope": "user"}, "user"),
        ({"scope": "tenant", "user": "bob"}, "user"),
        ({"obligations": ["trim_tools", "trim_tools"]}, "obligations"),
    ],
)
def test_budgets_that_cant_be_kept_are_invalid_budget_by_field(
    world: World, alice_client: APIClient, fields: dict[str, Any], field: str
) -> None:
    response = create(alice_client, **fields)
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "invalid_budget"
    assert field in response.json()["details"]
    assert not Budget.objects.exists()


def test_another_tenants_agent_or_user_is_unknown(world: World, alice_client: APIClient) -> None:
    theirs = make_agent(world.tenant_b, slug="globex-agent")
    for body in (
        {"scope": "agent", "agent": str(theirs.id)},
        {"scope": "agent", "agent": str(uuid.uuid4())},
        {"scope": "session", "period": "session", "agent": str(theirs.id)},
    ):
        refused = create(alice_client, **{"period": "day", **body})
        assert refused.status_code == 400 and refused.json()["code"] == "unknown_agent", body
    for username in ("charlie", "nobody"):
        refused = create(alice_client, scope="user", user=username)
        assert refused.status_code == 400 and refused.json()["code"] == "unknown_user"
    assert not Budget.objects.exists()

    ours = make_agent(world.tenant_a)
    agent = create(alice_client, scope="agent", agent=str(ours.id))
    assert agent.status_code == 201 and agent.json()["agent"] == str(ours.id)
    per_session = create(
        alice_client, scope="session", period="session", agent=str(ours.id), max_tokens=9000
    )
    assert per_session.status_code == 201


def test_a_second_budget_for_the_same_target_and_period_is_a_conflict(
    world: World, alice_client: APIClient
) -> None:
    assert create(alice_client).status_code == 201
    again = create(alice_client, max_cost="99")
    assert again.status_code == 409 and again.json()["code"] == "budget_exists"
    assert create(alice_client, period="month").status_code == 201
    assert create(alice_client, scope="user", user="bob").status_code == 201
    assert create(alice_client, scope="user", user="alice").status_code == 201
    assert Budget.objects.count() == 4


def test_patch_changes_caps_and_obligations_only(world: World, alice_client: APIClient) -> None:
    budget = create(alice_client).json()
    url = f"{API}/{budget['id']}"
    for body in ({"scope": "user"}, {"period": "month"}, {"agent": None}):
        fixed = alice_client.patch(url, body, format="json")
        assert fixed.status_code == 400 and fixed.json()["code"] == "unknown_field"
    capless = alice_client.patch(url, {"max_cost": None}, format="json")
    assert capless.status_code == 400 and capless.json()["code"] == "invalid_budget"
    for body in ({"max_cost": "0"}, {"max_tokens": -1}, {"max_cost": "1e3"}):
        bad = alice_client.patch(url, body, format="json")
        assert bad.status_code == 400 and bad.json()["code"] == "validation_error"
    twice = alice_client.patch(url, {"obligations": ["small_tier"] * 2}, format="json")
    assert twice.status_code == 400 and twice.json()["code"] == "invalid_budget"
    assert str(Budget.objects.get(id=budget["id"]).max_cost) == "10.5000"


def test_operators_read_budgets_only_admins_write_and_members_see_none(
    world: World, alice_client: APIClient, bob_client: APIClient
) -> None:
    budget = create(alice_client).json()
    url = f"{API}/{budget['id']}"
    dave = UserFactory(username="dave")
    MembershipFactory(tenant=world.tenant_a, user=dave, role=Role.OPERATOR)
    operator = APIClient()
    operator.force_login(dave)

    for reader in (operator, client_for(world.tenant_a, ["write"])):
        assert reader.get(API).status_code == 200
        assert reader.get(url).status_code == 200
        assert reader.get("/api/v1/usage").status_code == 200
        for response in (
            create(reader, period="month"),
            reader.patch(url, {"max_cost": "1"}, format="json"),
            reader.delete(url),
        ):
            assert response.status_code == 403
            assert response.json()["code"] == "permission_denied"
    for outsider in (bob_client, client_for(world.tenant_a, ["read"])):
        for response in (outsider.get(API), outsider.get(url), outsider.get("/api/v1/usage")):
            assert response.status_code == 403
    admin_key = client_for(world.tenant_a, ["admin"])
    assert admin_key.patch(url, {"max_cost": "1"}, format="json").status_code == 200
    assert str(Budget.objects.get(id=budget["id"]).max_cost) == "1.0000"


def test_the_detail_shows_spent_from_the_ledger_and_held_from_redis(
    world: World, alice_client: APIClient, prefix: str
) -> None:
    budget = create(alice_client, max_cost="2", max_tokens=1000).json()
    usage_row(world.tenant_a, input_tokens=300, output_tokens=100, cost="0.25")
    usage_row(world.tenant_a, input_tokens=200, output_tokens=0, cost="1.25", estimated=True)
    # Yesterday's and the other tenant's spend are not today's.
    usage_row(world.tenant_a, cost="5", created_at=datetime.now(UTC) - timedelta(days=1))
    usage_row(world.tenant_b, cost="5")

    caps = ledger.caps_for_turn(
        tenant_id=world.tenant_a.id, agent_id=None, user_id=None, session_id=None, turn_id=None
    )
    assert [c.budget_id for c in caps] == [budget["id"]]
    held = ledger.reserve(
        reservation_id="node-1@1",
        caps=caps,
        windows=[],
        tokens=150,
        micros=to_micros(Decimal("0.2")),
        deadline_s=time.time() + 60,
        meta={"tenant_id": str(world.tenant_a.id), "cost": "0.2"},
    )
    assert held.kind == "ok"

    detail = alice_client.get(f"{API}/{budget['id']}").json()
    assert (detail["spent_tokens"], detail["spent_cost"]) == (600, "1.500000")
    assert (detail["reserved_tokens"], detail["reserved_cost"]) == (150, "0.200000")
    assert detail["fraction_used"] == pytest.approx(0.85)  # (1.5 + 0.2) / 2
    assert detail["state"] == "warning"

    usage_row(world.tenant_a, cost="0.5")
    assert alice_client.get(f"{API}/{budget['id']}").json()["state"] == "exceeded"


def test_a_session_budget_shows_the_session_asked_for_else_the_latest(
    world: World, alice_client: APIClient, prefix: str
) -> None:
    budget = alice_client.post(API, {"scope": "session", "max_tokens": 1000}, format="json").json()
    url = f"{API}/{budget['id']}"
    assert alice_client.get(url).json()["current_period"] is None
    first, latest = uuid.uuid4(), uuid.uuid4()
    usage_row(world.tenant_a, session_id=first, input_tokens=700, output_tokens=0)
    usage_row(world.tenant_a, session_id=latest, input_tokens=10, output_tokens=0)
    assert alice_client.get(url).json()["spent_tokens"] == 10
    chosen = alice_client.get(f"{url}?session={first}").json()
    assert (chosen["spent_tokens"], chosen["state"], chosen["current_period"]) == (
        700,
        "ok",
        None,
    )
    bad = alice_client.get(f"{url}?session=nope")
    assert bad.status_code == 400 and bad.json()["code"] == "validation_error"


def test_a_budget_saved_over_rest_is_a_cap_the_ledger_applies(
    world: World, alice_client: APIClient, prefix: str
) -> None:
    budget = create(alice_client, max_cost=None, max_tokens=100).json()

    def reserve(rid: str, tokens: int) -> str:
        caps = ledger.caps_for_turn(
            tenant_id=world.tenant_a.id, agent_id=None, user_id=None, session_id=None, turn_id=None
        )
        return ledger.reserve(
            reservation_id=rid,
            caps=caps,
            windows=[],
            tokens=tokens,
            micros=0,
            deadline_s=time.time() + 60,
            meta={},
        ).kind

    assert reserve("a@1", 80) == "ok"
    assert reserve("b@1", 30) == "over"
    alice_client.patch(f"{API}/{budget['id']}", {"max_tokens": 200}, format="json")
    assert reserve("c@1", 30) == "ok"
    alice_client.patch(f"{API}/{budget['id']}", {"is_active": False}, format="json")
    assert reserve("d@1", 10_000) == "ok"


def test_the_schema_says_a_cost_cap_is_positive_and_bounded() -> None:
    from tests.core.openapi import served_schema

    body = served_schema()["components"]["schemas"]["BudgetInputRequest"]["properties"]
    # A string has no `minimum` or `maximum` in JSON Schema: the pattern says both.
    assert body["max_cost"]["pattern"] == r"^(?!0*(?:\.0*)?$)\d{1,9}(?:\.\d{1,4})?$"
    assert (body["max_tokens"]["minimum"], body["max_tokens"]["maximum"]) == (1, 10**12)
