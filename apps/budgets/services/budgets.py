"""Budget CRUD. REST and the console's `save_model` call the same functions, so a budget is
checked the same way whichever channel writes it.

    budget = budget_save(tenant=t, scope="agent", agent_id=a.id, max_cost=Decimal("5"))
    budget_update(budget=budget, max_tokens=100_000)     # caps, obligations, is_active only
    budget_delete(budget=budget)

A budget's scope, target and period are fixed once it exists: a new one is a new budget, so
the Redis counters it reads never need re-keying. The ledger caches a tenant's budgets for
WARDEN_BUDGET_CONFIG_CACHE_SECONDS: an edit reaches new reservations within it.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from apps.budgets import targets
from apps.budgets.exceptions import BudgetExists, BudgetInvalid, UnknownAgent, UnknownUser
from apps.budgets.models import (
    MAX_BUDGET_COST,
    MAX_BUDGET_TOKENS,
    MIN_BUDGET_COST,
    PERIODS_FOR,
    Budget,
    Scope,
    all_obligations,
)
from apps.tenants.models import Membership, Tenant

# What PATCH (and the console's change form) may change.
EDITABLE_FIELDS = ("max_tokens", "max_cost", "obligations", "is_active")


def _problem(field: str, message: str) -> BudgetInvalid:
    return BudgetInvalid(f"{field}: {message}", details={field: [message]})


def _check_caps(max_tokens: int | None, max_cost: Decimal | None) -> None:
    if max_tokens is None and max_cost is None:
        raise BudgetInvalid(
            "A budget needs a cap: max_tokens, max_cost or both.",
            details={
                "max_tokens": ["Set max_tokens, max_cost or both."],
                "max_cost": ["Set max_tokens, max_cost or both."],
            },
        )
    if max_tokens is not None and not 1 <= max_tokens <= MAX_BUDGET_TOKENS:
        raise _problem("max_tokens", f"Must be from 1 to {MAX_BUDGET_TOKENS}.")
    if max_cost is not None:
        if not max_cost.is_finite() or not MIN_BUDGET_COST <= max_cost <= MAX_BUDGET_COST:
            raise _problem("max_cost", f"Must be from {MIN_BUDGET_COST} to {MAX_BUDGET_COST:f}.")
        if max_cost != max_cost.quantize(MIN_BUDGET_COST):
            raise _problem("max_cost", "At most 4 decimal places.")


def _check_obligations(obligations: Iterable[str]) -> list[str]:
    chosen = list(obligations)
    unknown = sorted(set(chosen) - set(all_obligations()))
    if unknown:
        raise _problem("obligations", f"Unknown: {', '.join(unknown)}.")
    if len(set(chosen)) != len(chosen):
        raise _problem("obligations", "Each obligation at most once.")
    return chosen


def _exists(tenant: Tenant, scope: str, agent_id: Any, user: User | None, period: str) -> bool:
    return Budget.objects.filter(
        tenant=tenant, scope=scope, agent_id=agent_id, user=user, period=period
    ).exists()


def _taken(scope: str, period: str) -> BudgetExists:
    return BudgetExists(
        f"This tenant already has a {scope} budget per {period} for that target: change it "
        "instead.",
        details={"scope": scope, "period": period},
    )


def budget_check(
    *,
    tenant: Tenant,
    scope: str,
    period: str | None,
    agent_id: UUID | None = None,
    user: User | None = None,
    max_tokens: int | None = None,
    max_cost: Decimal | None = None,
    obligations: Iterable[str] | None = None,
) -> str:
    """Refuse a budget that can't be kept (`BudgetInvalid`, `details` by field), or whose
    agent or user is not the tenant's (`UnknownAgent` / `UnknownUser`: another tenant's is
    as unknown as one that never existed). Returns the period (the scope's first if none)."""
    if scope not in Scope.values:
        raise _problem("scope", f"One of {', '.join(Scope.values)}.")
    allowed = PERIODS_FOR[Scope(scope)]
    period = period or allowed[0]
    if period not in allowed:
        raise _problem("period", f"A {scope} budget counts per {' or '.join(allowed)}.")
    if scope == Scope.AGENT and agent_id is None:
        raise _problem("agent", "An agent budget names its agent.")
    if scope in (Scope.TENANT, Scope.USER) and agent_id is not None:
        raise _problem("agent", f"A {scope} budget applies to every agent: leave agent empty.")
    if scope == Scope.USER and user is None:
        raise _problem("user", "A user budget names its user.")
    if scope != Scope.USER and user is not None:
        raise _problem("user", "Only a user budget names a user.")
    _check_caps(max_tokens, max_cost)
    _check_obligations(obligations if obligations is not None else ())
    if agent_id is not None and targets.agent_lookup(tenant.id, agent_id) is None:
        raise UnknownAgent("No such agent in this tenant.", details={"agent": [str(agent_id)]})
    if user is not None and not Membership.objects.filter(tenant=tenant, user=user).exists():
        raise UnknownUser("No such member in this tenant.", details={"user": [user.get_username()]})
    if _exists(tenant, scope, agent_id, user, period):
        raise _taken(scope, period)
    return period


def budget_check_update(*, budget: Budget, **fields: Any) -> dict[str, Any]:
    """Refuse a change `budget_update` would refuse; the fields as they will be saved."""
    fixed = sorted(set(fields) - set(EDITABLE_FIELDS))
    if fixed:
        raise BudgetInvalid(
            "A budget's scope, target and period are fixed: create a new budget instead.",
            details={name: ["Can't be changed."] for name in fixed},
        )
    _check_caps(
        fields.get("max_tokens", budget.max_tokens), fields.get("max_cost", budget.max_cost)
    )
    if "obligations" in fields:
        fields["obligations"] = _check_obligations(fields["obligations"] or ())
    return fields


def member_by_username(*, tenant: Tenant, username: str) -> User:
    """The tenant's member called `username`; `UnknownUser` for anyone else."""
    membership = (
        Membership.objects.filter(tenant=tenant, user__username=username)
        .select_related("user")
        .first()
    )
    if membership is None:
        raise UnknownUser("No such member in this tenant.", details={"user": [username]})
    return membership.user


def budget_save(
    *,
    tenant: Tenant,
    scope: str,
    period: str | None = None,
    agent_id: UUID | None = None,
    user: User | None = None,
    max_tokens: int | None = None,
    max_cost: Decimal | None = None,
    obligations: Iterable[str] | None = None,
    is_active: bool = True,
) -> Budget:
    """Create a budget (409 `budget_exists` for a second one of the same scope, target and
    period). Obligations default to all of them; an empty list means warn only."""
    chosen = all_obligations() if obligations is None else list(obligations)
    period = budget_check(
        tenant=tenant,
        scope=scope,
        period=period,
        agent_id=agent_id,
        user=user,
        max_tokens=max_tokens,
        max_cost=max_cost,
        obligations=chosen,
    )
    try:
        with transaction.atomic():
            return Budget.objects.create(
                tenant=tenant,
                scope=scope,
                period=period,
                agent_id=agent_id,
                user=user,
                max_tokens=max_tokens,
                max_cost=max_cost,
                obligations=chosen,
                is_active=is_active,
            )
    except IntegrityError as exc:  # a concurrent create of the same budget won
        raise _taken(scope, period) from exc


def budget_update(*, budget: Budget, **fields: Any) -> Budget:
    """Change a budget's caps, obligations or whether it is active; nothing else."""
    fields = budget_check_update(budget=budget, **fields)
    for name, value in fields.items():
        setattr(budget, name, value)
    budget.save(update_fields=[*fields, "updated_at"])
    return budget


def budget_delete(*, budget: Budget) -> None:
    budget.delete()


def budgets_delete_for_agent(*, tenant_id: UUID, agent_id: UUID) -> int:
    """Delete the budgets naming an agent (agents call this inside an agent's delete, since
    `agent_id` is a plain column, not a cascading key). Returns how many."""
    deleted, _ = Budget.objects.filter(tenant_id=tenant_id, agent_id=agent_id).delete()
    return int(deleted)
