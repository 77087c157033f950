"""Domain errors of budgets; api/errors.py maps them to HTTP."""

from __future__ import annotations

from apps.core.exceptions import Conflict, InvalidInput, TooManyRequests, Unavailable


class BudgetInvalid(InvalidInput):
    """A budget that can't be kept: no cap, a period its scope doesn't have, a missing target.
    `details` say which field."""

    code = "invalid_budget"


class BudgetExists(Conflict):
    """The tenant already has a budget for this scope, target and period."""

    code = "budget_exists"


class BudgetExhausted(Conflict):
    """A cap is spent (or held): nothing more may run in its scope until its period rolls
    over or the cap is raised. `details` name the scope."""

    code = "budget_exceeded"


class RateLimited(TooManyRequests):
    """A requests- or tokens-per-minute window is full; `retry_after` says when it ends."""

    code = "rate_limited"


class BudgetUnavailable(Unavailable):
    """The reservation store (Redis) can't be reached: calls are refused, not run unmetered."""

    code = "budget_unavailable"


class UsageRangeInvalid(InvalidInput):
    code = "invalid_range"


class UnknownAgent(InvalidInput):
    """A budget names an agent the tenant does not have (another tenant's included)."""

    code = "unknown_agent"


class UnknownUser(InvalidInput):
    """A budget names a user who is not a member of the tenant."""

    code = "unknown_user"
