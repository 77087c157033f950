"""The console: a tenant admin sets budgets with the same checks as REST, sees what the
current period has spent and its burn-down, and charts of cost per day, model and agent
over their own tenant's usage only."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from apps.budgets.models import Budget
from tests.budgets.conftest import usage_row
from tests.conftest import World

pytestmark = pytest.mark.django_db

ADD = "/admin/budgets/budget/add/"
USAGE = "/admin/budgets/usagerecord/"


def console(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form(world: World, **fields: Any) -> dict[str, Any]:
    return {
        "tenant": world.tenant_a.id,
        "scope": "tenant",
        "agent": "",
        "user": "",
        "period": "",
        "max_tokens": "",
        "max_cost": "5",
        "obligations": ["small_tier"],
        "is_active": "on",
        **fields,
    }


def titles(html: bytes) -> list[str]:
    return re.findall(r"<title>([^<]*)</title>", html.decode())


def test_a_tenant_admin_creates_a_budget_with_the_apis_checks(world: World) -> None:
    alice = console(world.alice)
    assert alice.get(ADD).status_code == 200
    for fields, message in (
        ({"max_cost": ""}, b"Set max_tokens, max_cost or both."),
        ({"max_cost": "0"}, b"Must be from 0.0001 to 1000000000."),
        ({"max_tokens": "0"}, b"Must be from 1 to 1000000000000."),
        ({"max_tokens": "-3"}, b"greater than or equal to 0"),
        ({"scope": "session", "period": "day"}, b"A session budget counts per session"),
        ({"scope": "agent"}, b"An agent budget names its agent"),
        ({"scope": "user", "user": world.charlie.id}, b"Select a valid choice"),
    ):
        refused = alice.post(ADD, form(world, **fields))
        assert refused.status_code == 200, fields
        assert message in refused.content, (fields, refused.content[-3000:])
    assert not Budget.objects.exists()

    created = alice.post(ADD, form(world))
    assert created.status_code == 302, created.content[-3000:]
    budget = Budget.objects.get(tenant=world.tenant_a)
    assert (budget.scope, budget.period, str(budget.max_cost), budget.obligations) == (
        "tenant",
        "day",
        "5.0000",
        ["small_tier"],
    )
    again = alice.post(ADD, form(world))
    assert again.status_code == 200 and b"already has a tenant budget" in again.content

    from tests.budgets.test_api import make_agent

    agent = make_agent(world.tenant_a)
    per_agent = alice.post(ADD, form(world, scope="agent", agent=str(agent.id), period="month"))
    assert per_agent.status_code == 302
    assert Budget.objects.get(scope="agent").agent_id == agent.id


def test_the_change_page_edits_caps_only_and_shows_the_period_and_burndown(
    world: World, prefix: str
) -> None:
    from apps.budgets.services.budgets import budget_save

    budget = budget_save(tenant=world.tenant_a, scope="tenant", max_tokens=1000)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    usage_row(world.tenant_a, input_tokens=300, output_tokens=0, created_at=start)
    usage_row(world.tenant_a, input_tokens=200, output_tokens=0)
    url = f"/admin/budgets/budget/{budget.id}/change/"
    alice = console(world.alice)

    page = alice.get(url)
    assert page.status_code == 200
    assert b"spent 500 tokens" in page.content and b"50.0% used" in page.content
    html = page.content.decode()
    assert "<polyline" in html and "Burn-down: 500 of 1,000 left" in html
    assert re.search(r"<circle[^>]*><title>[^<]*: 700 left</title>", html)  # after the first

    refused = alice.post(url, {"max_tokens": "", "max_cost": "", "obligations": []})
    assert refused.status_code == 200 and b"Set max_tokens, max_cost or both." in refused.content
    changed = alice.post(url, {"max_tokens": "2000", "max_cost": "", "is_active": "on"})
    assert changed.status_code == 302
    budget.refresh_from_db()
    assert (budget.max_tokens, budget.obligations, budget.scope) == (2000, [], "tenant")


def test_usage_charts_per_day_model_and_agent(world: World) -> None:
    now = datetime.now(UTC)
    ids = {"helper": uuid.uuid4(), "writer": uuid.uuid4()}
    for agent, model, cost, days_ago in (
        ("helper", "big", "1.5", 0),
        ("helper", "big", "2", 1),
        ("writer", "small", "0.25", 1),
    ):
        usage_row(
            world.tenant_a,
            agent_id=ids[agent],
            agent_slug=agent,
            endpoint_name=model,
            model=f"m-{model}",
            cost=cost,
            created_at=now - timedelta(days=days_ago),
        )
    usage_row(world.tenant_b, agent_slug="globex-agent", endpoint_name="theirs", cost="99")
    today, yesterday = now.date().isoformat(), (now - timedelta(days=1)).date().isoformat()

    alice = console(world.alice)
    page = alice.get(f"{USAGE}?days=7")
    assert page.status_code == 200
    shown = titles(page.content)
    assert f"{today}: 1.50 USD" in shown and f"{yesterday}: 2.25 USD" in shown
    assert "big (m-big): 3.50 USD" in shown and "small (m-small): 0.250000 USD" in shown
    assert "helper: 3.50 USD" in shown and "writer: 0.250000 USD" in shown
    assert len([t for t in shown if re.match(r"\d{4}-\d\d-\d\d: ", t)]) == 7
    # Another tenant's usage is in none of them.
    assert not [t for t in shown if "99" in t or "globex" in t or "theirs" in t]

    tokens = alice.get(f"{USAGE}?metric=tokens&days=7")
    assert "helper: 240" in titles(tokens.content)  # 2 calls of 100 + 20
    refreshing = alice.get(f"{USAGE}?refresh=10")
    assert b'<meta http-equiv="refresh" content="10">' in refreshing.content
    # Filters apply to the charts too.
    only_small = alice.get(f"{USAGE}?endpoint_name=small&days=7")
    assert only_small.status_code == 200
    assert [t for t in titles(only_small.content) if t.startswith("helper")] == []


def test_charlie_sees_only_his_tenants_bars_and_budgets(world: World) -> None:
    from apps.budgets.services.budgets import budget_save

    theirs = budget_save(tenant=world.tenant_a, scope="tenant", max_tokens=10)
    usage_row(world.tenant_a, agent_slug="acme-agent", cost="7")
    charlie = console(world.charlie)
    page = charlie.get(USAGE)
    assert page.status_code == 200
    assert not [t for t in titles(page.content) if "acme-agent" in t or "7.00" in t]
    assert charlie.get("/admin/budgets/budget/").content.count(str(theirs.id).encode()) == 0
    foreign = charlie.get(f"/admin/budgets/budget/{theirs.id}/change/")
    assert foreign.status_code == 404
    # Nor can he create a budget for alice's tenant.
    refused = charlie.post(ADD, form(world))
    assert refused.status_code == 200 and not Budget.objects.filter(max_cost=5).exists()


def test_a_session_budgets_burndown_is_per_call_of_the_latest_session(world: World) -> None:
    from apps.budgets.services.budgets import budget_save

    budget = budget_save(tenant=world.tenant_a, scope="session", max_tokens=1000)
    page = console(world.alice).get(f"/admin/budgets/budget/{budget.id}/change/")
    assert b"Nothing spent in this period yet." in page.content
    session = uuid.uuid4()
    start = datetime.now(UTC) - timedelta(minutes=5)
    for n in range(3):
        usage_row(
            world.tenant_a,
            session_id=session,
            input_tokens=100,
            output_tokens=0,
            created_at=start + timedelta(minutes=n),
        )
    usage_row(world.tenant_a, session_id=uuid.uuid4(), created_at=start - timedelta(hours=1))
    html = console(world.alice).get(f"/admin/budgets/budget/{budget.id}/change/").content.decode()
    left = re.findall(r"<title>[^<]*: ([0-9,]+) left</title>", html)
    assert left == ["1,000", "900", "800", "700"]


def test_tenant_budget_settings_take_an_iso_currency(world: World) -> None:
    from apps.budgets.models import TenantBudgetSettings

    alice = console(world.alice)
    url = "/admin/budgets/tenantbudgetsettings/add/"
    body = {"tenant": world.tenant_a.id, "currency": "eur"}
    refused = alice.post(url, body)
    assert refused.status_code == 200 and not TenantBudgetSettings.objects.exists()
    assert alice.post(url, body | {"currency": "EUR"}).status_code == 302
    assert TenantBudgetSettings.objects.get(tenant=world.tenant_a).currency == "EUR"
