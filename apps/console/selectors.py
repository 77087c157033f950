"""What the console's dashboard and timeline read. Every function takes the tenants the
viewer may see (None: all, for the platform operator) — the same scope the admin applies."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Aggregate, Count, FloatField, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from apps.agents.models import ActionNode, Turn
from apps.approvals.models import ApprovalRequest, ApprovalStatus
from apps.budgets.models import UsageRecord

TenantIds = Iterable[Any] | None


class Percentile95(Aggregate):
    """PostgreSQL's continuous 95th percentile (ordered-set aggregate)."""

    function = "percentile_cont"
    template = "%(function)s(0.95) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def _scoped(qs: QuerySet[Any], tenant_ids: TenantIds) -> QuerySet[Any]:
    return qs if tenant_ids is None else qs.filter(tenant_id__in=list(tenant_ids))


@dataclass(frozen=True)
class Dashboard:
    since: datetime
    turns_by_status: list[tuple[str, Decimal]]
    turns_by_outcome: list[tuple[str, Decimal]]
    cost_per_day: list[tuple[str, Decimal]]
    cost_per_model: list[tuple[str, Decimal]]
    cost_per_agent: list[tuple[str, Decimal]]
    denials_per_tool: list[tuple[str, Decimal]]
    denials: int
    approvals_pending: int
    p95_latency_ms: list[tuple[str, Decimal]]
    turns: int
    cost: Decimal


def dashboard(*, tenant_ids: TenantIds, days: int = 14) -> Dashboard:
    since = timezone.now() - timedelta(days=days)
    turns = _scoped(Turn.objects.filter(created_at__gte=since), tenant_ids)
    usage = _scoped(UsageRecord.objects.filter(created_at__gte=since), tenant_ids)
    nodes = _scoped(ActionNode.objects.filter(created_at__gte=since), tenant_ids)
    denied = nodes.filter(kind="policy", status="deny")

    def counts(qs: QuerySet[Any], field: str) -> list[tuple[str, Decimal]]:
        rows = qs.values(field).annotate(n=Count("id")).order_by("-n", field)
        return [(str(r[field] or "—"), Decimal(r["n"])) for r in rows]

    def costs(field: str) -> list[tuple[str, Decimal]]:
        rows = usage.values(field).annotate(c=Sum("cost")).order_by("-c", field)[:10]
        return [(str(r[field] or "—"), r["c"] or Decimal(0)) for r in rows]

    per_day = (
        usage.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(c=Sum("cost"))
        .order_by("day")
    )
    latency = (
        nodes.exclude(kind="policy")
        .values("kind")
        .annotate(p95=Percentile95("latency_ms"))
        .order_by("kind")
    )
    return Dashboard(
        since=since,
        turns_by_status=counts(turns, "status"),
        turns_by_outcome=counts(turns.exclude(outcome=""), "outcome"),
        cost_per_day=[(r["day"].isoformat(), r["c"] or Decimal(0)) for r in per_day],
        cost_per_model=costs("model"),
        cost_per_agent=costs("agent_slug"),
        denials_per_tool=[
            (str(r["inputs__tool"] or "—"), Decimal(r["n"]))
            for r in denied.values("inputs__tool").annotate(n=Count("id")).order_by("-n")[:10]
        ],
        denials=denied.count(),
        approvals_pending=_scoped(
            ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING), tenant_ids
        ).count(),
        p95_latency_ms=[(r["kind"], Decimal(round(r["p95"] or 0))) for r in latency],
        turns=turns.count(),
        cost=usage.aggregate(c=Sum("cost"))["c"] or Decimal(0),
    )
