"""Budgets and usage over REST. Operators, admins and owners read (`budget.read`); admins and
owners (admin-scoped keys) create, change and delete budgets (`budget.write`).

Bad input answers 400: `validation_error` for a cap that is zero, negative or absurd (over
10^12 tokens or 10^9 in money) or not a decimal string; `invalid_budget` (`details` by field)
for a budget that can't be kept (no cap, a period the scope doesn't have, a target the scope
doesn't take or misses); `unknown_agent` / `unknown_user` for an agent or user the tenant
doesn't have (another tenant's included); `invalid_range` for a usage window that isn't one.
A second budget for the same scope, target and period is 409 `budget_exists`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.budgets import selectors
from apps.budgets.api import serializers as s
from apps.budgets.exceptions import UsageRangeInvalid
from apps.budgets.models import Budget
from apps.budgets.services import budgets as services
from apps.budgets.services.ledger import budget_figures, currency_for
from apps.core.api.schema import error_responses
from apps.core.api.views import PaginatedListMixin, get_or_404, paginated
from apps.tenants.authz import Permission
from apps.tenants.permissions import IsTenantMember, request_identity

# The longest usage window one request may ask for.
MAX_USAGE_SPAN = timedelta(days=366)
DEFAULT_USAGE_SPAN = timedelta(days=30)
# What `from` and `to` look like (the schema's pattern); a value of this shape that is no real
# instant (month 13) is still refused, 400 `invalid_range`.
_INSTANT_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?$"
)

_BUDGET_EXISTS = error_responses(
    409, _409="`budget_exists`: the tenant has a budget for that scope, target and period."
)


def _budget(request: Request, budget_id: uuid.UUID) -> Budget:
    tenant = request_identity(request).tenant
    return get_or_404(lambda: selectors.budget_get(tenant=tenant, budget_id=budget_id), "budget")


def _context(request: Request) -> dict[str, str]:
    return {"currency": currency_for(tenant_id=request_identity(request).tenant.id)}


class BudgetListApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.BUDGET_READ, "POST": Permission.BUDGET_WRITE}

    @extend_schema(responses=s.BudgetSerializer(many=True), summary="List budgets")
    def get(self, request: Request) -> Response:
        tenant = request_identity(request).tenant
        return paginated(
            request,
            self,
            selectors.budget_list(tenant=tenant),
            s.BudgetSerializer,
            context=_context(request),
        )

    @extend_schema(
        request=s.BudgetInputSerializer,
        responses={201: s.BudgetSerializer, **_BUDGET_EXISTS},
        summary="Create a budget",
    )
    def post(self, request: Request) -> Response:
        data = s.BudgetInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        tenant = request_identity(request).tenant
        username = fields.pop("user", None)
        user = None
        if username is not None:
            user = services.member_by_username(tenant=tenant, username=username)
        budget = services.budget_save(
            tenant=tenant, agent_id=fields.pop("agent", None), user=user, **fields
        )
        return Response(
            s.BudgetSerializer(budget, context=_context(request)).data,
            status=status.HTTP_201_CREATED,
        )


class BudgetDetailApi(APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {
        "GET": Permission.BUDGET_READ,
        "PATCH": Permission.BUDGET_WRITE,
        "DELETE": Permission.BUDGET_WRITE,
    }

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "session", uuid.UUID, description="A session budget: show this session."
            ),
            OpenApiParameter("turn", uuid.UUID, description="A turn budget: show this turn."),
        ],
        responses=s.BudgetDetailSerializer,
        summary="Get a budget and what its current period has spent and holds",
    )
    def get(self, request: Request, budget_id: uuid.UUID) -> Response:
        budget = _budget(request, budget_id)
        query = s.BudgetDetailQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        figures = budget_figures(
            budget=budget,
            session_id=query.validated_data.get("session"),
            turn_id=query.validated_data.get("turn"),
        )
        context = {**_context(request), "figures": figures}
        return Response(s.BudgetDetailSerializer(budget, context=context).data)

    @extend_schema(
        request=s.BudgetChangeSerializer,
        responses=s.BudgetSerializer,
        summary="Change a budget's caps, obligations or whether it is active",
    )
    def patch(self, request: Request, budget_id: uuid.UUID) -> Response:
        budget = _budget(request, budget_id)
        data = s.BudgetChangeSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        budget = services.budget_update(budget=budget, **dict(data.validated_data))
        return Response(s.BudgetSerializer(budget, context=_context(request)).data)

    @extend_schema(responses={204: None}, summary="Delete a budget")
    def delete(self, request: Request, budget_id: uuid.UUID) -> Response:
        services.budget_delete(budget=_budget(request, budget_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _instant(request: Request, name: str) -> datetime | None:
    """`?from=` / `?to=`: an ISO date (midnight UTC) or date-time (UTC when it has no offset)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.strip().upper())
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise UsageRangeInvalid(
            f"{name}: not an ISO date or date-time (e.g. 2025-01-31 or 2025-01-31T12:00:00Z).",
            details={name: [raw[:100]]},
        ) from exc


def _window(request: Request) -> tuple[datetime, datetime]:
    end = _instant(request, "to") or datetime.now(UTC)
    try:
        start = _instant(request, "from") or end - DEFAULT_USAGE_SPAN
    except OverflowError as exc:
        raise UsageRangeInvalid("from: before the first representable day.") from exc
    if start >= end:
        raise UsageRangeInvalid("from must be before to.", details={"from": [start.isoformat()]})
    if end - start > MAX_USAGE_SPAN:
        raise UsageRangeInvalid(
            f"The window may span at most {MAX_USAGE_SPAN.days} days.",
            details={"max_days": MAX_USAGE_SPAN.days},
        )
    return start, end


class UsageApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.BUDGET_READ}

    @extend_schema(
        parameters=[
            OpenApiParameter("group_by", str, enum=list(selectors.GROUP_BY)),
            OpenApiParameter(
                "from",
                str,
                pattern=_INSTANT_PATTERN,
                description="Start (inclusive): an ISO date (midnight UTC) or date-time. "
                "Default: 30 days before `to`.",
            ),
            OpenApiParameter(
                "to",
                str,
                pattern=_INSTANT_PATTERN,
                description="End (exclusive), like `from`. Default: now. At most 366 days "
                "after `from`.",
            ),
        ],
        responses={
            200: s.UsageRowSerializer(many=True),
            **error_responses(
                400,
                _400="Bad input: `validation_error` (a `group_by` it doesn't know), "
                "`invalid_range` (`from`/`to` not a date, `from` not before `to`, or more "
                "than 366 days apart), or a shared code (`unknown_field`, …).",
            ),
        },
        summary="Tokens and cost of the tenant's model calls, per day, model, agent or user",
    )
    def get(self, request: Request) -> Response:
        query = s.UsageQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        start, end = _window(request)
        rows = selectors.usage_rows(
            tenant=request_identity(request).tenant,
            group_by=query.validated_data["group_by"],
            start=start,
            end=end,
        )
        return paginated(request, self, rows, s.UsageRowSerializer, context=_context(request))
