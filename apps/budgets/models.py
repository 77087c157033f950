"""Budgets (caps on what a scope may spend), the usage ledger, and a tenant's limits.

This app sits below apps.agents: it knows agents, sessions and turns only by their ids (plain
UUID columns, not foreign keys), like approvals, so none of its migrations depends on agents'.
Open reservations are not rows: they live in Redis (apps/budgets/ledger), and `UsageRecord`
is the ledger of record the Redis counters are rebuilt from.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from apps.tenants.models import TenantOwned


class Scope(models.TextChoices):
    TENANT = "tenant", "Tenant"
    AGENT = "agent", "Agent"
    USER = "user", "User"
    SESSION = "session", "Session"
    TURN = "turn", "Turn"


class Period(models.TextChoices):
    TURN = "turn", "Turn"
    SESSION = "session", "Session"
    DAY = "day", "Day (UTC)"
    MONTH = "month", "Month (UTC)"


class Obligation(models.TextChoices):
    """What a turn does once a scope it spends in passes 80 % of its cap."""

    SMALL_TIER = "small_tier", "Move to the small tier"
    COMPRESS_CONTEXT = "compress_context", "Compress the context"
    TRIM_TOOLS = "trim_tools", "Trim the tool list"


# The periods each scope may be capped over (the first is the default).
PERIODS_FOR: dict[str, tuple[str, ...]] = {
    Scope.TENANT: (Period.DAY, Period.MONTH),
    Scope.AGENT: (Period.DAY, Period.MONTH),
    Scope.USER: (Period.DAY, Period.MONTH),
    Scope.SESSION: (Period.SESSION,),
    Scope.TURN: (Period.TURN,),
}
# Caps beyond these are typing mistakes, not budgets ("absurd" input is refused).
MAX_BUDGET_TOKENS = 10**12
MIN_BUDGET_COST = Decimal("0.0001")
MAX_BUDGET_COST = Decimal("1e9")


def all_obligations() -> list[str]:
    return [choice.value for choice in Obligation]


class Budget(TenantOwned):
    """A cap on what one scope may spend over a period, in tokens, money or both.

    Tenant, agent and user budgets count per UTC day or month. Session and turn budgets
    apply to every session (turn) of the tenant, or only to those of one agent when
    `agent_id` is set. At 80 % a turn is warned and its `obligations` switch on; no call is
    made that could take the scope past 100 %.
    """

    scope = models.CharField(max_length=8, choices=Scope.choices)
    # Agents sit above this app: an id, not a foreign key (checked through targets.py).
    agent_id = models.UUIDField(null=True, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    period = models.CharField(max_length=8, choices=Period.choices)
    max_tokens = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_BUDGET_TOKENS)],
    )
    # In the tenant's currency (TenantBudgetSettings.currency).
    max_cost = models.DecimalField(
        max_digits=14,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(MIN_BUDGET_COST), MaxValueValidator(MAX_BUDGET_COST)],
    )
    obligations = models.JSONField(default=all_obligations, blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_tokens__isnull=False) | Q(max_cost__isnull=False),
                name="budget_has_a_cap",
            ),
            models.CheckConstraint(
                condition=Q(max_tokens__isnull=True)
                | Q(max_tokens__gte=1, max_tokens__lte=MAX_BUDGET_TOKENS),
                name="budget_max_tokens_in_range",
            ),
            models.CheckConstraint(
                condition=Q(max_cost__isnull=True)
                | Q(max_cost__gte=MIN_BUDGET_COST, max_cost__lte=MAX_BUDGET_COST),
                name="budget_max_cost_in_range",
            ),
            models.UniqueConstraint(
                fields=["tenant", "scope", "agent_id", "user", "period"],
                name="uniq_budget_target_period",
                nulls_distinct=False,
            ),
        ]
        indexes = [models.Index(fields=["tenant", "is_active", "scope"])]

    def __str__(self) -> str:
        return f"{self.scope} budget ({self.period})"


class UsageKind(models.TextChoices):
    CALL = "call", "Model call"
    EXPIRED_RESERVATION = "expired_reservation", "Expired reservation (charged at its hold)"


class UsageRecord(TenantOwned):
    """One settled model call, or a dead worker's reservation charged at its hold: the ledger
    of record. The Redis counters are a cache of these rows and are rebuilt from them.

    `reservation_id` ("<node id>@<turn attempt>") makes writing a row idempotent: the
    reconciler and a late settle of the same call meet on it. Labels (endpoint, model, agent
    slug) are copied, so usage stays readable after the endpoint or agent is gone.
    """

    reservation_id = models.CharField(max_length=240, unique=True)
    turn_id = models.UUIDField(null=True, blank=True)
    session_id = models.UUIDField(null=True, blank=True)
    agent_id = models.UUIDField(null=True, blank=True)
    agent_slug = models.CharField(max_length=100, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    node_id = models.CharField(max_length=200, blank=True)
    endpoint_name = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal(0))
    currency = models.CharField(max_length=3, default="USD")
    # The provider reported no usage: the tokens are Warden's estimate.
    estimated = models.BooleanField(default=False)
    kind = models.CharField(max_length=24, choices=UsageKind.choices, default=UsageKind.CALL)
    reserved_tokens = models.PositiveIntegerField(default=0)
    reserved_cost = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal(0))
    # The call used more than it reserved (the provider reported more than the bound).
    overrun = models.BooleanField(default=False)
    # The OpenTelemetry trace of the turn that made the call (32 hex digits; "" for a dead
    # worker's hold): the same correlation id as its events, steps and spans.
    trace_id = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(cost__gte=0), name="usage_cost_not_negative"),
            models.CheckConstraint(
                condition=Q(reserved_cost__gte=0), name="usage_reserved_cost_not_negative"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "created_at"]),
            models.Index(fields=["tenant", "agent_id", "created_at"]),
            models.Index(fields=["tenant", "user", "created_at"]),
            models.Index(fields=["session_id"]),
            models.Index(fields=["turn_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint_name or '?'}: {self.input_tokens}+{self.output_tokens} tokens"


class TenantBudgetSettings(TenantOwned):
    """A tenant's currency and its model rate limits (requests and tokens per minute, per
    tenant and per user). A null limit takes the deployment's default
    (`WARDEN_MODEL_{RPM,TPM}_PER_{TENANT,USER}`); 0 means no limit."""

    currency = models.CharField(max_length=3, default="USD")
    rpm_per_tenant = models.PositiveIntegerField(null=True, blank=True)
    tpm_per_tenant = models.PositiveIntegerField(null=True, blank=True)
    rpm_per_user = models.PositiveIntegerField(null=True, blank=True)
    tpm_per_user = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "tenant budget settings"
        verbose_name_plural = "tenant budget settings"
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="uniq_budget_settings_tenant"),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="budget_settings_currency_iso"
            ),
        ]

    def __str__(self) -> str:
        return f"budget settings ({self.currency})"
