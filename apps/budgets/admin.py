"""Console: budgets (set and change them, see what the current period has spent and holds,
and its burn-down), the usage ledger with charts of cost per day, model and agent, and a
tenant's currency and rate limits.

Saving a budget goes through the same services as the API, so the console refuses what
REST refuses, with the same reasons. Charts are inline SVG drawn on the server
(apps/budgets/charts.py): no JavaScript. A tenant admin sees only their tenants' rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from apps.budgets import charts, selectors, targets
from apps.budgets.ledger.types import BudgetFigures
from apps.budgets.models import (
    Budget,
    Obligation,
    Period,
    TenantBudgetSettings,
    UsageRecord,
    all_obligations,
)
from apps.budgets.services import budgets as services
from apps.budgets.services.ledger import budget_figures, currency_for
from apps.core.exceptions import WardenError
from apps.tenants.admin_scoping import TenantScopedAdmin, administered_tenant_ids
from apps.tenants.models import Tenant

_CAP_FIELDS = ("max_tokens", "max_cost", "obligations", "is_active")


def _tenant_ids(request: HttpRequest) -> list[Any]:
    if request.user.is_superuser:
        return list(Tenant.objects.values_list("id", flat=True))
    return list(administered_tenant_ids(request))


def _add_errors(form: forms.BaseForm, exc: WardenError) -> None:
    """Put a service's refusal on the fields its `details` name (else on the form)."""
    placed = False
    for name, messages in (exc.details or {}).items():
        if name in form.fields and isinstance(messages, list):
            form.add_error(name, [str(m) for m in messages] if name != "agent" else exc.message)
            placed = True
    if not placed:
        form.add_error(None, exc.message)


class _BudgetForm(forms.ModelForm):
    obligations = forms.MultipleChoiceField(
        choices=Obligation.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="What a turn does once this scope passes 80 %. None: warn only.",
    )

    class Meta:
        model = Budget
        fields = ["max_tokens", "max_cost", "obligations", "is_active"]


class BudgetAddForm(_BudgetForm):
    agent = forms.ChoiceField(
        required=False,
        help_text="Required for an agent budget; optional for session and turn budgets (only "
        "that agent's); empty for tenant and user budgets.",
    )
    period = forms.ChoiceField(
        choices=[("", "The scope's default"), *Period.choices],
        required=False,
        help_text="Tenant, agent, user: per UTC day (default) or month. Session and turn "
        "budgets count per session and per turn.",
    )

    class Meta(_BudgetForm.Meta):
        fields = ["tenant", "scope", "agent", "user", "period", *_CAP_FIELDS]

    tenant_ids: list[Any] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        agent = self.fields["agent"]
        assert isinstance(agent, forms.ChoiceField)
        agent.choices = [
            ("", "—"),
            *((str(agent_id), label) for agent_id, label in targets.agent_choices(self.tenant_ids)),
        ]
        self.fields["obligations"].initial = all_obligations()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors or data.get("tenant") is None or not data.get("scope"):
            return data
        try:
            data["period"] = services.budget_check(
                tenant=data["tenant"],
                scope=data["scope"],
                period=data.get("period") or None,
                agent_id=data.get("agent") or None,
                user=data.get("user"),
                max_tokens=data.get("max_tokens"),
                max_cost=data.get("max_cost"),
                obligations=data.get("obligations") or [],
            )
        except WardenError as exc:
            _add_errors(self, exc)
        return data

    def _post_clean(self) -> None:
        # The service has checked everything the model would (and the agent, which the
        # model can't); the row is written by budget_save, not by this form.
        return None


class BudgetChangeForm(_BudgetForm):
    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            services.budget_check_update(
                budget=self.instance, **{name: data.get(name) for name in _CAP_FIELDS}
            )
        except WardenError as exc:
            _add_errors(self, exc)
        return data


@admin.register(Budget)
class BudgetAdmin(TenantScopedAdmin):
    list_display = [
        "__str__",
        "tenant",
        "scope",
        "target",
        "period",
        "max_tokens",
        "max_cost",
        "is_active",
        "updated_at",
    ]
    list_filter = ["tenant", "scope", "period", "is_active"]
    add_fields = ("tenant", "scope", "agent", "user", "period", *_CAP_FIELDS)
    change_fields = (
        "tenant",
        "scope",
        "target",
        "period",
        *_CAP_FIELDS,
        "current_period",
        "burndown",
    )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.change_fields if obj is not None else self.add_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return ("tenant", "scope", "target", "period", "current_period", "burndown")

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            base = type("BudgetAddForm", (BudgetAddForm,), {"tenant_ids": _tenant_ids(request)})
            kwargs["form"] = base
        else:
            kwargs["form"] = BudgetChangeForm
            kwargs["fields"] = list(_CAP_FIELDS)
        return super().get_form(request, obj, change=change, **kwargs)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user":
            kwargs["queryset"] = (
                get_user_model()
                .objects.filter(memberships__tenant_id__in=_tenant_ids(request))
                .distinct()
                .order_by("username")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="target")
    def target(self, obj: Budget) -> str:
        if obj.user is not None:
            return obj.user.get_username()
        if obj.agent_id is not None:
            slug = targets.agent_lookup(obj.tenant_id, obj.agent_id)
            return f"agent {slug or obj.agent_id}"
        if obj.scope in ("session", "turn"):
            return f"every {obj.scope}"
        return "the whole tenant"

    def _figures(self, obj: Budget) -> BudgetFigures:
        cached = getattr(obj, "_figures_cache", None)
        if cached is None:
            cached = budget_figures(budget=obj)
            obj._figures_cache = cached  # type: ignore[attr-defined]
        return cached

    @admin.display(description="current period")
    def current_period(self, obj: Budget) -> SafeString:
        figures = self._figures(obj)
        currency = currency_for(tenant_id=obj.tenant_id)
        window = (
            f"{figures.start:%Y-%m-%d %H:%M} to {figures.end:%Y-%m-%d %H:%M} UTC"
            if figures.start and figures.end
            else "the latest session or turn that spent"
        )
        return format_html(
            "{}<br>spent {} tokens and {} {}; held by calls in flight {} tokens and {} {}<br>"
            "{}% used: <strong>{}</strong>",
            window,
            f"{figures.spent_tokens:,}",
            f"{figures.spent_cost:.6f}",
            currency,
            f"{figures.reserved_tokens:,}",
            f"{figures.reserved_cost:.6f}",
            currency,
            f"{figures.fraction * 100:.1f}",
            figures.state,
        )

    @admin.display(description="burn-down")
    def burndown(self, obj: Budget) -> SafeString:
        figures = self._figures(obj)
        points, start, end, unit = selectors.burndown_points(budget=obj, figures=figures)
        money = unit == "cost"
        cap = Decimal(obj.max_cost or 0) if money else Decimal(obj.max_tokens or 0)
        if start is None or end is None:
            return format_html("<em>{}</em>", "Nothing spent in this period yet.")
        label = currency_for(tenant_id=obj.tenant_id) if money else "tokens"
        svg = charts.burndown_chart(points, cap=cap, start=start, end=end, unit=label)
        return mark_safe(svg)  # noqa: S308 — built by charts.py, every text escaped

    def save_model(self, request: HttpRequest, obj: Budget, form: Any, change: bool) -> None:
        data = form.cleaned_data
        caps = {name: data.get(name) for name in _CAP_FIELDS}
        if change:
            services.budget_update(budget=Budget.objects.get(pk=obj.pk), **caps)
            return
        saved = services.budget_save(
            tenant=data["tenant"],
            scope=data["scope"],
            period=data.get("period") or None,
            agent_id=data.get("agent") or None,
            user=data.get("user"),
            **caps,
        )
        obj.pk, obj.created_at, obj.updated_at = saved.pk, saved.created_at, saved.updated_at
        obj.period = saved.period
        obj._state.adding = False

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None  # a budget has no related rows; budget_save wrote it

    def delete_model(self, request: HttpRequest, obj: Budget) -> None:
        services.budget_delete(budget=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Budget]) -> None:
        for budget in queryset:
            services.budget_delete(budget=budget)


# --------------------------------------------------------------------------- usage

_OWN_PARAMS = ("days", "metric", "refresh")
TOP_AGENTS = 10


def _own_params(request: HttpRequest) -> dict[str, str]:
    """Take the charts' own query parameters out of the request before the changelist reads
    it (it would take them for filters it doesn't know)."""
    params = request.GET.copy()
    own = {name: params.pop(name)[-1] for name in _OWN_PARAMS if name in params}
    request.GET = params  # type: ignore[assignment]
    return own


def _positive(raw: str | None, default: int, limit: int) -> int:
    if raw is None or not raw.isascii() or not raw.isdigit():
        return default
    return min(max(int(raw), 1), limit)


@admin.register(UsageRecord)
class UsageRecordAdmin(TenantScopedAdmin):
    list_display = [
        "created_at",
        "tenant",
        "agent_slug",
        "user",
        "endpoint_name",
        "model",
        "input_tokens",
        "output_tokens",
        "cost",
        "currency",
        "estimated",
        "kind",
        "overrun",
    ]
    list_filter = ["tenant", "endpoint_name", "estimated", "kind"]
    date_hierarchy = "created_at"
    change_list_template = "admin/budgets/usagerecord/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[UsageRecord]:
        return super().get_queryset(request).select_related("tenant", "user")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the ledger of record

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        own = _own_params(request)
        days = _positive(own.get("days"), 30, 366)
        metric = "tokens" if own.get("metric") == "tokens" else "cost"
        refresh = _positive(own.get("refresh"), 0, 3600) if "refresh" in own else 0
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if not context or "cl" not in context:
            return response  # a redirect (bad filter) or an error page
        rows = context["cl"].queryset
        kept = request.GET.dict()

        def link(**changes: Any) -> str:
            return "?" + urlencode({**kept, **{"days": days, "metric": metric}, **changes})

        context.update(
            usage_charts=_usage_charts(rows, days=days, metric=metric),
            usage_days=days,
            usage_metric=metric,
            usage_refresh=refresh,
            usage_links={
                "cost": link(metric="cost"),
                "tokens": link(metric="tokens"),
                "days7": link(days=7),
                "days30": link(days=30),
                "days90": link(days=90),
                "refresh": link(refresh=10),
                "stop": link(),
            },
        )
        return response


def _value(row: dict[str, Any], metric: str) -> Decimal:
    if metric == "tokens":
        return Decimal(int(row["input_tokens"]) + int(row["output_tokens"]))
    return Decimal(row["cost"])


def _usage_charts(
    rows: QuerySet[UsageRecord], *, days: int, metric: str, now: datetime | None = None
) -> list[tuple[str, SafeString]]:
    """Cost (or tokens) per day, per model and per agent (the top ten, then the rest) of the
    rows the changelist shows, over the last `days` days."""
    now = now or datetime.now(UTC)
    first = (now - timedelta(days=days - 1)).date()
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    window = rows.filter(created_at__gte=since).order_by()
    currencies = set(window.values_list("currency", flat=True).distinct()[:2])
    unit = "tokens" if metric == "tokens" else (currencies.pop() if len(currencies) == 1 else "")
    what = "Tokens" if metric == "tokens" else "Cost"

    per_day = {str(r["group"]): _value(r, metric) for r in selectors.usage_grouped(window, "day")}
    day_rows = [
        (str(day), per_day.get(str(day), Decimal(0)))
        for day in (first + timedelta(days=n) for n in range(days))
    ]
    model_rows = [
        (str(r["group"] or "?") + (f" ({r['label']})" if r["label"] else ""), _value(r, metric))
        for r in selectors.usage_grouped(window, "model")
    ]
    agents = sorted(
        (
            (str(r["label"] or r["group"] or "no agent"), _value(r, metric))
            for r in selectors.usage_grouped(window, "agent")
        ),
        key=lambda item: item[1],
        reverse=True,
    )
    if len(agents) > TOP_AGENTS:
        rest = sum((value for _, value in agents[TOP_AGENTS:]), Decimal(0))
        agents = [*agents[:TOP_AGENTS], (f"{len(agents) - TOP_AGENTS} other agents", rest)]
    return [
        (f"{what} per day", mark_safe(charts.bar_chart(day_rows, unit=unit))),  # noqa: S308
        (f"{what} per model", mark_safe(charts.bar_chart(model_rows, unit=unit))),  # noqa: S308
        (f"{what} per agent", mark_safe(charts.bar_chart(agents, unit=unit))),  # noqa: S308
    ]


@admin.register(TenantBudgetSettings)
class TenantBudgetSettingsAdmin(TenantScopedAdmin):
    list_display = [
        "tenant",
        "currency",
        "rpm_per_tenant",
        "tpm_per_tenant",
        "rpm_per_user",
        "tpm_per_user",
    ]
    fields = [
        "tenant",
        "currency",
        "rpm_per_tenant",
        "tpm_per_tenant",
        "rpm_per_user",
        "tpm_per_user",
    ]
