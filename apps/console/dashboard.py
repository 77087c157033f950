"""The console's home page (UNFOLD["DASHBOARD_CALLBACK"]): the last two weeks of the
viewer's tenants as server-side SVG charts (apps/budgets/charts.py), no chart script."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils.safestring import mark_safe

from apps.approvals.models import ApprovalStatus
from apps.budgets.charts import bar_chart, format_value
from apps.console import selectors
from apps.tenants.admin_scoping import administered_tenant_ids

# Counts go through the charts' "tokens" unit: a plain integer with no unit after it.
_COUNT = "tokens"


def viewer_tenant_ids(request: HttpRequest) -> set[Any] | None:
    """None for the platform operator (every tenant); otherwise the tenants they administer."""
    return None if request.user.is_superuser else administered_tenant_ids(request)


def dashboard_callback(request: HttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    if not request.user.is_active or not request.user.is_staff:
        return context
    data = selectors.dashboard(tenant_ids=viewer_tenant_ids(request))

    def chart(rows: list[Any], unit: str) -> str:
        if not rows:
            return ""
        return mark_safe(bar_chart(rows, unit=unit, width=520))  # noqa: S308  # escaped there

    queue = reverse("admin:approvals_approvalrequest_changelist")
    context["warden"] = {
        "since": data.since,
        "kpis": [
            {"label": "Turns", "value": f"{data.turns:,}"},
            {"label": "Cost", "value": format_value(data.cost, "USD")},
            {"label": "Policy denials", "value": f"{data.denials:,}"},
            {
                "label": "Approvals pending",
                "value": f"{data.approvals_pending:,}",
                "link": f"{queue}?status__exact={ApprovalStatus.PENDING}",
            },
        ],
        "charts": [
            {"title": "Turns by status", "svg": chart(data.turns_by_status, _COUNT)},
            {"title": "Turn outcomes", "svg": chart(data.turns_by_outcome, _COUNT)},
            {"title": "Cost per day", "svg": chart(data.cost_per_day, "USD")},
            {"title": "Cost per model", "svg": chart(data.cost_per_model, "USD")},
            {"title": "Cost per agent", "svg": chart(data.cost_per_agent, "USD")},
            {"title": "Policy denials per tool", "svg": chart(data.denials_per_tool, _COUNT)},
            {"title": "p95 step latency (ms)", "svg": chart(data.p95_latency_ms, _COUNT)},
        ],
    }
    return context
