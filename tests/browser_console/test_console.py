"""The console in a real browser: a tenant admin sees only their tenant on every page they
can open; an approver approves a parked step from the admin queue with one click and the
turn — run by a real Celery worker — completes; the dashboard and the timeline tell it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.urls import reverse

from apps.agents import services as agent_services
from apps.agents.models import ActionNode, Turn, TurnStatus
from apps.approvals.models import ApprovalRequest, ApprovalStatus
from apps.tenants.admin_scoping import TenantScopedAdmin
from tests.agents.conftest import make_session, wait_for_turn
from tests.agents.step_server import StepModelServer
from tests.agents.test_concurrency import step_agent
from tests.browser_console.conftest import screenshot, sign_in
from tests.conftest import WorkerProcess, World

pytestmark = pytest.mark.django_db(transaction=True)

FINISHED = ("completed", "failed", "cancelled")


@pytest.fixture
def servers() -> Iterator[list[StepModelServer]]:
    started: list[StepModelServer] = []
    yield started
    for server in started:
        server.stop()


def test_a_tenant_admin_sees_only_their_tenant(world: World, live_server: Any, page: Any) -> None:
    # Something of Acme's to leak: an agent and a session.
    server = StepModelServer([])
    try:
        agent = step_agent(world.tenant_a, server, slug="acme-secret-agent")
        make_session(agent, world.alice)
    finally:
        server.stop()
    sign_in(page, live_server.url, world.charlie)
    assert page.locator("#warden-dashboard").is_visible()
    visited = 0
    for model, model_admin in admin.site._registry.items():
        if not isinstance(model_admin, TenantScopedAdmin):
            continue
        opts = model._meta
        page.goto(live_server.url + reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        body = page.locator("body").inner_text()
        assert "Acme" not in body and "acme-secret-agent" not in body, opts.label
        visited += 1
    assert visited >= 10
    # The sidebar offers the domains, and nothing charlie cannot open.
    sidebar = page.locator("body").inner_text()
    assert "Agents and sessions" in sidebar and "Policies" in sidebar
    assert "Users" not in sidebar


def test_approve_from_the_admin_queue_and_the_turn_completes(
    world: World,
    live_server: Any,
    page: Any,
    celery_worker: WorkerProcess,
    servers: list[StepModelServer],
    dave: Any,
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger.txt"
    server = StepModelServer([("guarded_append", {"path": str(ledger), "text": "{tag}: ok"})])
    servers.append(server)
    agent = step_agent(world.tenant_a, server, slug="pr-prep", tools=["guarded_append"])
    session = make_session(agent, world.alice)
    turn = agent_services.turn_enqueue(session=session, message="note it", requested_by=world.alice)
    turn = wait_for_turn(turn, statuses=("waiting", *FINISHED))
    assert turn.status == TurnStatus.WAITING, turn.detail
    approval = ApprovalRequest.objects.get(turn_id=turn.id)

    sign_in(page, live_server.url, dave)
    page.goto(live_server.url + reverse("admin:approvals_approvalrequest_changelist"))
    row = page.locator("tr", has_text="guarded_append")
    assert row.count() == 1
    screenshot(page, "approvals-queue")
    row.get_by_role("button", name="Approve").click()
    page.wait_for_load_state()
    assert "the turn resumes" in page.locator("body").inner_text()

    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED and approval.approver
    turn = wait_for_turn(Turn.objects.get(id=turn.id), statuses=FINISHED)
    assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
    assert ledger.read_text().splitlines() == ["note it: ok"]

    # The whole story in the console, as alice (the tenant's owner) reads it.
    page.context.clear_cookies()
    sign_in(page, live_server.url, world.alice)
    assert page.locator('[data-kpi="turns"]').inner_text() == "1"
    screenshot(page, "dashboard", docs=True)
    page.goto(live_server.url + reverse("console:session-timeline", args=[session.id]))
    spans = page.locator(".wf-span")
    kinds = {spans.nth(i).get_attribute("data-kind") for i in range(spans.count())}
    assert {"turn", "model_call", "policy", "tool_call"} <= kinds, kinds
    policy = page.locator('.wf-span[data-kind="policy"]').first
    policy.locator("summary").click()
    assert "guarded_append" in policy.inner_text()
    traced = ActionNode.objects.filter(turn=turn, kind="policy").exclude(trace_id="").first()
    assert traced is not None, "the worker's policy decision carries its trace id"
    assert traced.trace_id in policy.locator("[data-trace-id]").inner_text()
    screenshot(page, "timeline", docs=True)

    # Cost: the usage ledger's charts hold this turn's model calls.
    page.goto(live_server.url + reverse("admin:budgets_usagerecord_changelist"))
    assert "step-model" in page.locator(".usage-charts").inner_text()
    screenshot(page, "usage")
