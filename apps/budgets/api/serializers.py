from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.budgets.models import (
    MAX_BUDGET_COST,
    MAX_BUDGET_TOKENS,
    MIN_BUDGET_COST,
    Budget,
    Obligation,
    Period,
    Scope,
)
from apps.budgets.selectors import GROUP_BY
from apps.core.api.serializers import StrictInputSerializer

# Spent and held money: micro-units, as the ledger holds it (4 places would show a cheap
# model's calls as 0).
MONEY_PLACES = Decimal("0.000001")


def money(value: Decimal | int | None) -> str:
    return str(Decimal(value or 0).quantize(MONEY_PLACES))


def _max_tokens() -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=1,
        max_value=MAX_BUDGET_TOKENS,
        required=False,
        allow_null=True,
        help_text="Tokens (input + output) the scope may spend per period; null: no token cap.",
    )


def _max_cost() -> serializers.DecimalField:
    # 9 whole digits: the schema's pattern then says the cap's upper bound (JSON Schema has no
    # maximum for a string), and anything it allows is under MAX_BUDGET_COST.
    return serializers.DecimalField(
        max_digits=13,
        decimal_places=4,
        min_value=MIN_BUDGET_COST,
        max_value=MAX_BUDGET_COST,
        required=False,
        allow_null=True,
        help_text="Money the scope may spend per period, in the tenant's currency (a string, "
        'e.g. "10.50"); null: no money cap.',
    )


def _obligations() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=Obligation.choices),
        required=False,
        help_text="What a turn does once the scope passes 80 %, each at most once; "
        "[]: warn only. Default on create: all of them.",
    )


class BudgetInputSerializer(StrictInputSerializer):
    """A cap on what one scope may spend over a period. `agent` is required for scope `agent`,
    optional for `session` and `turn` (only that agent's sessions/turns), refused for
    `tenant` and `user`; `user` (a member's username) only for scope `user`. Periods:
    tenant, agent, user → `day` (default) or `month`; session → `session`; turn → `turn`.
    At least one of `max_tokens`, `max_cost`."""

    scope = serializers.ChoiceField(choices=Scope.choices)
    agent = serializers.UUIDField(required=False, allow_null=True)
    user = serializers.CharField(required=False, allow_null=True, max_length=150)
    period = serializers.ChoiceField(choices=Period.choices, required=False)
    max_tokens = _max_tokens()
    max_cost = _max_cost()
    obligations = _obligations()
    is_active = serializers.BooleanField(required=False, default=True)


class BudgetChangeSerializer(StrictInputSerializer):
    """What a budget's PATCH may change: its caps, obligations and whether it is active. A
    new scope, target or period is a new budget."""

    max_tokens = _max_tokens()
    max_cost = _max_cost()
    obligations = _obligations()
    is_active = serializers.BooleanField(required=False)


class BudgetSerializer(serializers.ModelSerializer):
    agent = serializers.UUIDField(source="agent_id", allow_null=True, read_only=True)
    user = serializers.SerializerMethodField()
    currency = serializers.SerializerMethodField()
    obligations = serializers.ListField(
        child=serializers.ChoiceField(choices=Obligation.choices), read_only=True
    )

    class Meta:
        model = Budget
        fields = [
            "id",
            "scope",
            "agent",
            "user",
            "period",
            "max_tokens",
            "max_cost",
            "currency",
            "obligations",
            "is_active",
            "created_at",
            "updated_at",
        ]

    def get_user(self, budget: Budget) -> str | None:
        return budget.user.get_username() if budget.user is not None else None

    def get_currency(self, budget: Budget) -> str:
        return str(self.context.get("currency", "USD"))


class PeriodSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()


class BudgetDetailSerializer(BudgetSerializer):
    """A budget with its current window: spent (the ledger), held by calls in flight (Redis),
    the fraction used and its state. Session and turn budgets show the session (turn) given
    by `?session=` (`?turn=`), else the latest one that spent."""

    current_period = serializers.SerializerMethodField()
    spent_tokens = serializers.SerializerMethodField()
    spent_cost = serializers.SerializerMethodField()
    reserved_tokens = serializers.SerializerMethodField()
    reserved_cost = serializers.SerializerMethodField()
    fraction_used = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()

    class Meta(BudgetSerializer.Meta):
        fields = [
            *BudgetSerializer.Meta.fields,
            "current_period",
            "spent_tokens",
            "spent_cost",
            "reserved_tokens",
            "reserved_cost",
            "fraction_used",
            "state",
        ]

    def _figures(self) -> Any:
        return self.context["figures"]

    @extend_schema_field(PeriodSerializer(allow_null=True))
    def get_current_period(self, budget: Budget) -> dict[str, Any] | None:
        """Day and month budgets: [start, end) of the current window, UTC; else null."""
        figures = self._figures()
        if figures.start is None:
            return None
        return dict(PeriodSerializer({"start": figures.start, "end": figures.end}).data)

    def get_spent_tokens(self, budget: Budget) -> int:
        return int(self._figures().spent_tokens)

    def get_spent_cost(self, budget: Budget) -> str:
        return money(self._figures().spent_cost)

    def get_reserved_tokens(self, budget: Budget) -> int:
        return int(self._figures().reserved_tokens)

    def get_reserved_cost(self, budget: Budget) -> str:
        return money(self._figures().reserved_cost)

    def get_fraction_used(self, budget: Budget) -> float:
        return round(float(self._figures().fraction), 6)

    def get_state(self, budget: Budget) -> str:
        return str(self._figures().state)


class BudgetDetailQuerySerializer(serializers.Serializer):
    session = serializers.UUIDField(required=False)
    turn = serializers.UUIDField(required=False)


class UsageQuerySerializer(serializers.Serializer):
    group_by = serializers.ChoiceField(choices=GROUP_BY, required=False, default="day")


class UsageRowSerializer(serializers.Serializer):
    group = serializers.CharField(
        allow_null=True,
        help_text="The day (YYYY-MM-DD, UTC), the model endpoint's name, the agent's id or the "
        "user's name; null for calls without one.",
    )
    label = serializers.CharField(  # type: ignore[assignment]
        help_text="The model (group_by=model), the agent's slug, the username; empty for days."
    )
    calls = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    tokens = serializers.IntegerField()
    cost = serializers.CharField(help_text="A decimal string, in `currency`.")
    estimated_calls = serializers.IntegerField(
        help_text="Calls whose tokens are estimated (the provider reported none, or a dead "
        "worker's hold was charged)."
    )
    currency = serializers.CharField()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        row = dict(instance)
        return {
            "group": None if row["group"] is None else str(row["group"]),
            "label": str(row["label"] or ""),
            "calls": int(row["calls"]),
            "input_tokens": int(row["input_tokens"]),
            "output_tokens": int(row["output_tokens"]),
            "tokens": int(row["input_tokens"]) + int(row["output_tokens"]),
            "cost": money(row["cost"]),
            "estimated_calls": int(row["estimated_calls"]),
            "currency": str(self.context.get("currency", "USD")),
        }
