"""Counters, caps, rate windows and reservation results: plain values, no framework.

A counter is named by what it counts (a tenant's spend today, one session's spend), not by
the budget that reads it: an explicit session budget and an agent's built-in session cap share
`session:<id>`. Money is held in Redis as integer micro-units rounded up (Lua numbers are
doubles, exact far beyond any cap here); the ledger keeps the exact Decimal. Redis spend is
therefore never below the ledger's, so a cap Redis enforces holds in the ledger too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Literal

WARN_FRACTION = 0.8
MICROS = 10**6

DAY_TTL_S = 3 * 86_400
MONTH_TTL_S = 40 * 86_400
SESSION_TTL_S = 7 * 86_400
TURN_TTL_S = 2 * 86_400


def to_micros(cost: Decimal) -> int:
    """Money as integer micro-units, rounded up: Redis never holds less than the ledger."""
    return int((cost * MICROS).to_integral_value(rounding=ROUND_CEILING))


def from_micros(micros: int) -> Decimal:
    return Decimal(micros) / MICROS


@dataclass(frozen=True)
class Counter:
    """What one scope has spent (and holds) in one window; `key` is its Redis hash."""

    key: str
    scope: str
    target: str
    window: str  # "d:20250131" | "m:202501" | "" (session, turn: the whole of it)
    ttl_s: int
    tenant_id: str = ""


def window_for(period: str, at: datetime) -> str:
    at = at.astimezone(UTC)
    if period == "day":
        return f"d:{at:%Y%m%d}"
    if period == "month":
        return f"m:{at:%Y%m}"
    return ""


def window_bounds(window: str) -> tuple[datetime, datetime] | None:
    """[start, end) of a day or month window, UTC; None for session and turn windows."""
    if window.startswith("d:"):
        start = datetime.strptime(window[2:], "%Y%m%d").replace(tzinfo=UTC)
        return start, start + timedelta(days=1)
    if window.startswith("m:"):
        start = datetime.strptime(window[2:], "%Y%m").replace(tzinfo=UTC)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else (start.replace(month=start.month + 1))
        )
        return start, end
    return None


_TTL = {"day": DAY_TTL_S, "month": MONTH_TTL_S, "session": SESSION_TTL_S, "turn": TURN_TTL_S}


def counter_for(
    *, prefix: str, tenant_id: str, scope: str, target: str, period: str, at: datetime
) -> Counter:
    window = window_for(period, at)
    key = f"{prefix}:c:{tenant_id}:{scope}:{target}:{window}"
    return Counter(
        key=key, scope=scope, target=target, window=window, ttl_s=_TTL[period], tenant_id=tenant_id
    )


@dataclass(frozen=True)
class Cap:
    """A limit on one counter. `budget_id` None: an agent's built-in cap (tokens per turn and
    per session). A cap of None is no limit in that unit."""

    counter: Counter
    budget_id: str | None
    period: str
    max_tokens: int | None
    max_micros: int | None
    obligations: frozenset[str] = frozenset()
    label: str = ""


@dataclass(frozen=True)
class CounterState:
    spent_tokens: int = 0
    spent_micros: int = 0
    reserved_tokens: int = 0
    reserved_micros: int = 0


@dataclass(frozen=True)
class RateWindow:
    """A fixed window of `span_ms` from its first hit: requests (rpm, weight 1 per call) or
    tokens (tpm, weight the call's hold, corrected at settle)."""

    key: str
    scope: Literal["tenant", "user"]
    kind: Literal["rpm", "tpm"]
    limit: int
    span_ms: int = 60_000


def rate_key(*, prefix: str, tenant_id: str, user_id: str | None, kind: str) -> str:
    who = f"{tenant_id}:{user_id}" if user_id is not None else str(tenant_id)
    return f"{prefix}:rate:{who}:{kind}"


@dataclass(frozen=True)
class ReserveResult:
    """`ok`: held everywhere (`states` after the hold, by counter key). `over`: `cap` has no
    room (`states` holds its state). `rate`: `window` is full for `retry_after_s`. `load`:
    `counter` is not in Redis yet (the service loads it from the ledger and retries). `dup`:
    this reservation id is already held or settled."""

    kind: Literal["ok", "over", "rate", "load", "dup"]
    states: Mapping[str, CounterState] = field(default_factory=dict)
    cap: Cap | None = None
    window: RateWindow | None = None
    retry_after_s: float = 0.0
    counter: Counter | None = None


@dataclass(frozen=True)
class BuiltinCap:
    """An agent's own cap, in tokens: per turn (input + output) or per session."""

    scope: Literal["turn", "session"]
    max_tokens: int
    label: str
    obligations: frozenset[str] = frozenset()


@dataclass(frozen=True)
class UsageRow:
    """One UsageRecord as the ledger writes it (every column but the generated ones)."""

    tenant_id: str
    reservation_id: str
    turn_id: str | None = None
    session_id: str | None = None
    agent_id: str | None = None
    agent_slug: str = ""
    user_id: int | None = None
    node_id: str = ""
    endpoint_name: str = ""
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    currency: str = "USD"
    estimated: bool = False
    kind: str = "call"
    reserved_tokens: int = 0
    reserved_cost: Decimal = Decimal(0)
    overrun: bool = False
    trace_id: str = ""


@dataclass(frozen=True)
class BudgetFigures:
    """A budget's current window: what is spent (ledger) and held (Redis), and its state."""

    window: str
    start: datetime | None
    end: datetime | None
    spent_tokens: int
    spent_cost: Decimal
    reserved_tokens: int
    reserved_cost: Decimal
    fraction: float
    state: Literal["ok", "warning", "exceeded"]


def fraction(cap: Cap, state: CounterState) -> float:
    """The larger of (spent + held) / cap over tokens and money; 0 when uncapped."""
    parts = [0.0]
    if cap.max_tokens:
        parts.append((state.spent_tokens + state.reserved_tokens) / cap.max_tokens)
    if cap.max_micros:
        parts.append((state.spent_micros + state.reserved_micros) / cap.max_micros)
    return max(parts)


def state_of(value: float) -> Literal["ok", "warning", "exceeded"]:
    if value >= 1.0:
        return "exceeded"
    return "warning" if value >= WARN_FRACTION else "ok"
