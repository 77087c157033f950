"""Reads of budgets and the usage ledger. Every one takes the tenant (or a queryset already
scoped to the caller's tenants, for the console)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, Max, Q, QuerySet, Sum, Value
from django.db.models.fields import CharField
from django.db.models.functions import Cast, Coalesce, TruncDate, TruncDay, TruncHour

from apps.budgets.ledger.types import BudgetFigures
from apps.budgets.models import Budget, Period, Scope, UsageRecord
from apps.tenants.models import Tenant

GROUP_BY: tuple[str, ...] = ("day", "model", "agent", "user")


def budget_list(*, tenant: Tenant) -> QuerySet[Budget]:
    return Budget.objects.filter(tenant=tenant).select_related("user").order_by("created_at", "id")


def budget_get(*, tenant: Tenant, budget_id: uuid.UUID) -> Budget:
    return budget_list(tenant=tenant).get(id=budget_id)


def _group_key(group_by: str) -> Any:
    return {
        "day": Cast(TruncDate("created_at", tzinfo=UTC), CharField()),
        "model": F("endpoint_name"),
        "agent": Cast("agent_id", CharField()),
        "user": F("user__username"),
    }[group_by]


def _label(group_by: str) -> Any:
    return {
        "day": Value(""),
        "model": Max("model"),
        "agent": Max("agent_slug"),
        "user": Max("user__username"),
    }[group_by]


def usage_grouped(rows: QuerySet[UsageRecord], group_by: str) -> QuerySet[Any]:
    """Calls, tokens and cost of `rows` per day (UTC), model endpoint, agent or user."""
    return (
        rows.annotate(group=_group_key(group_by))
        .values("group")
        .annotate(
            label=_label(group_by),
            calls=Count("id"),
            input_tokens=Coalesce(Sum("input_tokens"), 0),
            output_tokens=Coalesce(Sum("output_tokens"), 0),
            cost=Coalesce(Sum("cost"), Decimal(0)),
            estimated_calls=Count("id", filter=Q(estimated=True)),
        )
        .order_by(F("group").asc(nulls_last=True))
    )


def usage_rows(*, tenant: Tenant, group_by: str, start: datetime, end: datetime) -> QuerySet[Any]:
    """The tenant's usage in [start, end) per group. Charges of expired holds count (they are
    marked estimated)."""
    rows = UsageRecord.objects.filter(tenant=tenant, created_at__gte=start, created_at__lt=end)
    return usage_grouped(rows, group_by)


def _latest_target(budget: Budget, field: str) -> Any:
    rows = UsageRecord.objects.filter(tenant_id=budget.tenant_id).exclude(**{field: None})
    if budget.agent_id is not None:
        rows = rows.filter(agent_id=budget.agent_id)
    return rows.order_by("-created_at").values_list(field, flat=True).first()


def burndown_points(
    *, budget: Budget, figures: BudgetFigures, at: datetime | None = None
) -> tuple[list[tuple[datetime, Decimal]], datetime | None, datetime | None, str]:
    """What remains of the budget over its current window: per hour (day budget), per day
    (month budget), per call (session or turn budget: the latest one that spent). In money
    when the budget caps money, else in tokens. Returns (points, start, end, unit); the
    points start at the window's start with the whole cap."""
    at = at or datetime.now(UTC)
    money = budget.max_cost is not None
    cap = Decimal(budget.max_cost or 0) if money else Decimal(budget.max_tokens or 0)
    unit = "cost" if money else "tokens"
    rows = UsageRecord.objects.filter(tenant_id=budget.tenant_id)
    if budget.scope == Scope.AGENT:
        rows = rows.filter(agent_id=budget.agent_id)
    elif budget.scope == Scope.USER:
        rows = rows.filter(user=budget.user)
    elif budget.scope in (Scope.SESSION, Scope.TURN):
        field = "session_id" if budget.scope == Scope.SESSION else "turn_id"
        target = _latest_target(budget, field)
        if target is None:
            return [], None, None, unit
        rows = rows.filter(**{field: target})
    amount: Any = F("cost") if money else F("input_tokens") + F("output_tokens")
    if budget.period in (Period.DAY, Period.MONTH):
        if figures.start is None or figures.end is None:
            return [], None, None, unit
        start, end = figures.start, figures.end
        trunc = TruncHour if budget.period == Period.DAY else TruncDay
        step = timedelta(hours=1) if budget.period == Period.DAY else timedelta(days=1)
        buckets = (
            rows.filter(created_at__gte=start, created_at__lt=end)
            .annotate(bucket=trunc("created_at", tzinfo=UTC))
            .values("bucket")
            .annotate(spent=Sum(amount))
            .order_by("bucket")
        )
        points = [(start, cap)]
        spent = Decimal(0)
        for bucket in buckets:
            spent += Decimal(bucket["spent"] or 0)
            points.append((min(bucket["bucket"] + step, end, max(at, start)), cap - spent))
        return points, start, end, unit
    calls = list(
        rows.order_by("created_at").values_list(
            "created_at", "cost", "input_tokens", "output_tokens"
        )
    )
    if not calls:
        return [], None, None, unit
    start, end = calls[0][0], max(calls[-1][0], calls[0][0] + timedelta(seconds=1))
    points = [(start, cap)]
    spent = Decimal(0)
    for created_at, cost, input_tokens, output_tokens in calls:
        spent += Decimal(cost) if money else Decimal(input_tokens + output_tokens)
        points.append((created_at, cap - spent))
    return points, start, end, unit


def usage_totals(
    *,
    tenant: Tenant,
    session_id: uuid.UUID | None = None,
    user_id: int | None = None,
    since: datetime | None = None,
) -> tuple[int, Decimal]:
    """(tokens, cost) the ledger has for one session or one user (since a moment): what a
    person's own budget meter shows."""
    rows = UsageRecord.objects.filter(tenant=tenant)
    if session_id is not None:
        rows = rows.filter(session_id=session_id)
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    totals = rows.aggregate(
        tokens=Coalesce(Sum(F("input_tokens") + F("output_tokens")), 0),
        cost=Coalesce(Sum("cost"), Decimal(0)),
    )
    return int(totals["tokens"]), Decimal(totals["cost"])


def budget_caps_for(
    *, tenant: Tenant, agent_id: uuid.UUID, user_id: int | None
) -> dict[str, Budget | None]:
    """The active budgets a person's meter compares against: the session budget of this agent
    (or of every agent) and the user's daily budget; None where there is none."""
    active = Budget.objects.filter(tenant=tenant, is_active=True)
    session = (
        active.filter(scope=Scope.SESSION, period=Period.SESSION)
        .filter(Q(agent_id=agent_id) | Q(agent_id__isnull=True))
        .order_by(F("agent_id").asc(nulls_last=True))
        .first()
    )
    day = None
    if user_id is not None:
        day = active.filter(scope=Scope.USER, period=Period.DAY, user_id=user_id).first()
    return {"session": session, "day": day}
