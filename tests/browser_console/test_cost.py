"""Issue 11's "Done when" in a real browser: a tenant admin sets an endpoint's prices and a
budget in the console, an agent runs on a real Celery worker, and the console's usage charts
and the budget's burn-down move with what the turns spent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from apps.agents import services as agent_services
from apps.agents.models import Turn, TurnStatus
from apps.budgets.models import Budget, UsageRecord
from apps.llm.models import ModelEndpoint
from tests.agents.conftest import make_session, wait_for_turn
from tests.agents.step_server import StepModelServer
from tests.agents.test_concurrency import step_agent
from tests.browser_console.conftest import screenshot, sign_in
from tests.conftest import WorkerProcess, World

pytestmark = pytest.mark.django_db(transaction=True)

FINISHED = ("completed", "failed", "cancelled")


def charts_text(page: Any) -> str:
    return str(page.locator(".usage-charts").inner_text())


def test_a_tenant_admin_prices_budgets_and_watches_the_charts_move(
    world: World, live_server: Any, page: Any, celery_worker: WorkerProcess
) -> None:
    server = StepModelServer([], final="priced answer")
    try:
        agent = step_agent(world.tenant_a, server, slug="priced")
        endpoint = ModelEndpoint.objects.get(tenant=world.tenant_a, name="step-priced")
        sign_in(page, live_server.url, world.alice)

        # Prices, on the endpoint's change page.
        page.goto(live_server.url + reverse("admin:llm_modelendpoint_change", args=[endpoint.pk]))
        page.fill("input[name=price_input_per_mtok]", "2")
        page.fill("input[name=price_output_per_mtok]", "8")
        page.click("button[name=_save], input[name=_save]")
        page.wait_for_load_state()
        endpoint.refresh_from_db()
        assert endpoint.price_input_per_mtok == Decimal("2")
        assert endpoint.price_output_per_mtok == Decimal("8")

        # A daily money budget for the tenant, on the budget add page.
        page.goto(live_server.url + reverse("admin:budgets_budget_add"))
        page.select_option("select[name=tenant]", str(world.tenant_a.pk))
        page.select_option("select[name=scope]", "tenant")
        page.select_option("select[name=period]", "day")
        page.fill("input[name=max_cost]", "5")
        page.click("button[name=_save], input[name=_save]")
        page.wait_for_load_state()
        budget = Budget.objects.get(tenant=world.tenant_a, scope="tenant")
        assert budget.max_cost == Decimal("5")

        page.goto(live_server.url + reverse("admin:budgets_usagerecord_changelist"))
        before = charts_text(page)
        assert "step-model" not in before

        session = make_session(agent, world.alice)
        for message in ("first", "second"):
            turn = agent_services.turn_enqueue(
                session=session, message=message, requested_by=world.alice
            )
            turn = wait_for_turn(turn, statuses=FINISHED)
            assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)

        rows = UsageRecord.objects.filter(tenant=world.tenant_a, model="step-model")
        assert rows.count() == 2
        spent = sum((r.cost for r in rows), Decimal(0))
        assert spent > 0  # priced at what the console set

        # The charts hold the calls now: cost per model and per agent.
        page.reload()
        after = charts_text(page)
        assert after != before
        assert "step-model" in after and "priced" in after
        screenshot(page, "usage-after-turns")

        # The budget's page shows what the period has spent, and its burn-down.
        page.goto(live_server.url + reverse("admin:budgets_budget_change", args=[budget.pk]))
        body = page.locator("body").inner_text()
        assert f"and {spent:.6f} USD" in body, body[:3000]
        assert "Nothing spent in this period yet" not in body
        assert page.locator("svg").count() >= 1
        screenshot(page, "budget-burndown")
        assert Turn.objects.filter(session=session, status=TurnStatus.COMPLETED).count() == 2
    finally:
        server.stop()
