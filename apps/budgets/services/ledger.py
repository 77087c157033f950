"""The ledger's services: which caps and rate windows a call falls under, reserve → settle
against Redis, the Postgres ledger the Redis counters are rebuilt from, and the reconciler
that charges the holds of workers that died between reserve and settle.

Holds live in Redis only (ledger/redis_ledger.py); every settled call is one `UsageRecord`
row, written in the statement that updates the turn and session counters
(`usage_upsert_sql`). A counter Redis does not have (new, expired, lost) is summed from those
rows the first time a script asks for it. Redis unreachable: `BudgetUnavailable` (calls are
refused, never run unmetered).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar
from uuid import UUID

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import F, Q, Sum
from django.db.models.functions import Ceil, Coalesce

from apps.budgets.exceptions import BudgetExhausted, BudgetUnavailable, RateLimited
from apps.budgets.ledger.redis_ledger import PriorSettle, RedisLedger
from apps.budgets.ledger.types import (
    MICROS,
    BudgetFigures,
    BuiltinCap,
    Cap,
    Counter,
    CounterState,
    RateWindow,
    ReserveResult,
    UsageRow,
    counter_for,
    fraction,
    from_micros,
    rate_key,
    state_of,
    to_micros,
    window_bounds,
)
from apps.budgets.models import Budget, Scope, TenantBudgetSettings, UsageKind, UsageRecord
from apps.core.redis_pool import SharedConnectionPool
from apps.tenants.models import Tenant

logger = logging.getLogger("warden.budgets")

T = TypeVar("T")

_ledgers: dict[tuple[str, str], RedisLedger] = {}
_ledgers_lock = threading.Lock()


def ledger() -> RedisLedger:
    """The process's ledger client (one per Redis URL and key prefix)."""
    url, prefix = str(settings.REDIS_URL), str(settings.WARDEN_BUDGET_REDIS_PREFIX)
    found = _ledgers.get((url, prefix))
    if found is None:
        with _ledgers_lock:
            found = _ledgers.get((url, prefix))
            if found is None:
                client = redis.Redis(connection_pool=SharedConnectionPool.from_url(url))
                found = _ledgers[(url, prefix)] = RedisLedger(client, prefix=prefix)
    return found


# --------------------------------------------------------------------------- configuration

_cache: dict[tuple[str, str], tuple[float, Any]] = {}


def _cached(kind: str, tenant_id: Any, load: Callable[[], T]) -> T:
    """A tenant's budgets or settings, kept WARDEN_BUDGET_CONFIG_CACHE_SECONDS per process: one
    query per turn at most, and none at all for a busy tenant."""
    ttl = float(settings.WARDEN_BUDGET_CONFIG_CACHE_SECONDS)
    if ttl <= 0:
        return load()
    key, now = (kind, str(tenant_id)), time.monotonic()
    hit = _cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]  # type: ignore[no-any-return]
    value = load()
    _cache[key] = (now + ttl, value)
    return value


def _budgets(tenant_id: Any) -> list[Budget]:
    return _cached(
        "budgets",
        tenant_id,
        lambda: list(Budget.objects.filter(tenant_id=tenant_id, is_active=True)),
    )


def _settings(tenant_id: Any) -> TenantBudgetSettings | None:
    return _cached(
        "settings",
        tenant_id,
        lambda: TenantBudgetSettings.objects.filter(tenant_id=tenant_id).first(),
    )


def currency_for(*, tenant_id: Any) -> str:
    found = _settings(tenant_id)
    return found.currency if found else str(settings.WARDEN_BUDGET_DEFAULT_CURRENCY)


def _label(budget: Budget) -> str:
    if budget.scope in (Scope.SESSION, Scope.TURN) and budget.agent_id is not None:
        return f"{budget.scope} budget of one agent"
    if budget.scope in (Scope.SESSION, Scope.TURN):
        return f"{budget.scope} budget"
    return f"{budget.scope} budget ({budget.period})"


def _cap(budget: Budget, counter: Counter) -> Cap:
    return Cap(
        counter=counter,
        budget_id=str(budget.id),
        period=budget.period,
        max_tokens=budget.max_tokens,
        max_micros=to_micros(budget.max_cost) if budget.max_cost is not None else None,
        obligations=frozenset(budget.obligations or ()),
        label=_label(budget),
    )


def caps_for_turn(
    *,
    tenant_id: Any,
    agent_id: Any,
    user_id: int | None,
    session_id: Any,
    turn_id: UUID | None,
    builtin: Sequence[BuiltinCap] = (),
    at: datetime | None = None,
) -> list[Cap]:
    """Every cap a call of this turn spends against: the tenant's active budgets that apply,
    plus the agent's built-in caps. Without `turn_id` (admission, before the turn exists)
    turn caps are left out."""
    at = at or datetime.now(UTC)
    prefix = str(settings.WARDEN_BUDGET_REDIS_PREFIX)

    def counter(scope: str, target: Any, period: str) -> Counter:
        return counter_for(
            prefix=prefix,
            tenant_id=str(tenant_id),
            scope=scope,
            target=str(target),
            period=period,
            at=at,
        )

    targets: dict[Scope, Any] = {
        Scope.TENANT: tenant_id,
        Scope.AGENT: agent_id,
        Scope.USER: user_id,
        Scope.SESSION: session_id,
        Scope.TURN: turn_id,
    }
    caps: list[Cap] = []
    for budget in _budgets(tenant_id):
        target = targets[Scope(budget.scope)]
        if target is None:
            continue
        if budget.scope == Scope.AGENT and str(budget.agent_id) != str(agent_id):
            continue
        if budget.scope == Scope.USER and budget.user_id != user_id:
            continue
        if (
            budget.scope in (Scope.SESSION, Scope.TURN)
            and budget.agent_id is not None
            and str(budget.agent_id) != str(agent_id)
        ):
            continue
        caps.append(_cap(budget, counter(budget.scope, target, budget.period)))
    for own in builtin:
        target = targets[Scope(own.scope)]
        if target is None:
            continue
        caps.append(
            Cap(
                counter=counter(own.scope, target, own.scope),
                budget_id=None,
                period=own.scope,
                max_tokens=own.max_tokens,
                max_micros=None,
                obligations=own.obligations,
                label=own.label,
            )
        )
    return caps


def windows_for(*, tenant_id: Any, user_id: int | None) -> list[RateWindow]:
    """The rpm/tpm windows a model call of this tenant (and user) counts in; a limit of 0 is
    none. The tenant's settings, else the deployment's defaults."""
    own = _settings(tenant_id)
    prefix = str(settings.WARDEN_BUDGET_REDIS_PREFIX)
    windows: list[RateWindow] = []
    wanted: list[tuple[Literal["tenant", "user"], Literal["rpm", "tpm"], Any]] = [
        ("tenant", "rpm", None),
        ("tenant", "tpm", None),
    ]
    if user_id is not None:
        wanted += [("user", "rpm", user_id), ("user", "tpm", user_id)]
    for scope, kind, user in wanted:
        limit = getattr(own, f"{kind}_per_{scope}", None) if own else None
        if limit is None:
            limit = int(getattr(settings, f"WARDEN_MODEL_{kind.upper()}_PER_{scope.upper()}"))
        if limit > 0:
            key = rate_key(
                prefix=prefix,
                tenant_id=str(tenant_id),
                user_id=None if user is None else str(user),
                kind=kind,
            )
            windows.append(RateWindow(key=key, scope=scope, kind=kind, limit=limit))
    return windows


# --------------------------------------------------------------------------- the ledger


def _usage_filter(counter: Counter) -> Q:
    """The UsageRecord rows a counter counts."""
    q = Q(tenant_id=counter.tenant_id)
    field = {
        Scope.TENANT: "",
        Scope.AGENT: "agent_id",
        Scope.USER: "user_id",
        Scope.SESSION: "session_id",
        Scope.TURN: "turn_id",
    }[Scope(counter.scope)]
    if field:
        q &= Q(**{field: counter.target})
    bounds = window_bounds(counter.window)
    if bounds:
        q &= Q(created_at__gte=bounds[0], created_at__lt=bounds[1])
    return q


def ledger_sums(counter: Counter) -> tuple[int, int, Decimal]:
    """(tokens, micros, cost) the ledger has for a counter. Micros are summed per row,
    rounded up like every settle did, so a reloaded counter holds what Redis held."""
    row = UsageRecord.objects.filter(_usage_filter(counter)).aggregate(
        tokens=Coalesce(Sum(F("input_tokens") + F("output_tokens")), 0),
        micros=Coalesce(Sum(Ceil(F("cost") * MICROS)), Decimal(0)),
        cost=Coalesce(Sum("cost"), Decimal(0)),
    )
    return int(row["tokens"]), int(row["micros"]), Decimal(row["cost"])


def _is_fresh(counter: Counter, fresh: Collection[str]) -> bool:
    """A session's or turn's counter whose target the caller knows has made no call yet."""
    return counter.scope in ("session", "turn") and counter.target in fresh


def _load(counter: Counter, *, fresh: Collection[str] = ()) -> None:
    """Load a counter from the ledger; a fresh one (`_is_fresh`) has no rows to sum, and
    loads as zero."""
    if _is_fresh(counter, fresh):
        tokens, micros = 0, 0
    else:
        tokens, micros, _ = ledger_sums(counter)
    ledger().load(counter, tokens, micros)


def _unavailable(exc: Exception) -> BudgetUnavailable:
    logger.warning("budget ledger unreachable", extra={"error": type(exc).__name__})
    return BudgetUnavailable(
        "Budgets can't be checked right now (the reservation store is unreachable); "
        "nothing runs unmetered. Try again shortly.",
        retry_after=5,
    )


def _count_refusal(result: ReserveResult) -> None:
    if result.kind == "over" and result.cap is not None:
        stats_incr(f"over:{result.cap.counter.scope}")
    elif result.kind == "rate" and result.window is not None:
        stats_incr(f"rate:{result.window.scope}")


def _with_loads(
    caps: Sequence[Cap],
    attempt: Callable[[Collection[str]], ReserveResult],
    fresh: Collection[str] = (),
) -> ReserveResult:
    """Run a script, loading each counter it finds missing from the ledger (once each).
    Counters of `fresh` targets load as zero inside the script itself: no round trip of
    their own."""
    keys = {cap.counter.key for cap in caps if _is_fresh(cap.counter, fresh)}
    try:
        for _ in range(len(caps) + 1):
            result = attempt(keys)
            if result.kind != "load" or result.counter is None:
                _count_refusal(result)
                return result
            _load(result.counter, fresh=fresh)
        raise RuntimeError("a counter kept disappearing while it was loaded")
    except redis.RedisError as exc:
        raise _unavailable(exc) from exc


def reserve(
    *,
    reservation_id: str,
    caps: Sequence[Cap],
    windows: Sequence[RateWindow],
    tokens: int,
    micros: int,
    deadline_s: float,
    meta: Mapping[str, Any],
    fresh: Collection[str] = (),
    settle: PriorSettle | None = None,
) -> ReserveResult:
    """Hold the most a call can cost in every cap and count it in every rate window, in one
    atomic step, or nothing. `meta` (tenant_id, turn_id, session_id, agent_id, agent_slug,
    user_id, node_id, currency, cost: the hold's exact money as a string) is what the
    reconciler writes if the hold outlives `deadline_s`. `fresh`: ids of sessions and turns
    that have made no model call yet (their counters load as zero, without summing the
    ledger). `settle`: an earlier call's settle (same caps and windows; its ledger row
    committed, as for `settle`) to run in the same Redis step, whatever the reserve answers."""
    led = ledger()
    return _with_loads(
        caps,
        lambda keys: led.reserve(
            reservation_id=reservation_id,
            caps=caps,
            windows=windows,
            tokens=tokens,
            micros=micros,
            deadline_s=deadline_s,
            meta=meta,
            fresh=keys,
            settle=settle,
        ),
        fresh,
    )


def settle(
    *,
    reservation_id: str,
    caps: Sequence[Cap],
    windows: Sequence[RateWindow],
    tokens: int,
    micros: int,
) -> dict[str, CounterState]:
    """Replace a hold by what the call used. Write the ledger row first (usage_upsert_sql):
    a worker dying in between leaves the hold to the reconciler, and the ledger the truth."""
    try:
        outcome = ledger().settle(
            reservation_id=reservation_id, caps=caps, windows=windows, tokens=tokens, micros=micros
        )
    except redis.RedisError as exc:
        raise _unavailable(exc) from exc
    return outcome.states


def peek(
    *,
    caps: Sequence[Cap],
    windows: Sequence[RateWindow],
    tokens: int = 0,
    micros: int = 0,
    fresh: Collection[str] = (),
) -> ReserveResult:
    """`reserve`'s checks, holding nothing: the states a turn starts from."""
    led = ledger()
    return _with_loads(
        caps,
        lambda keys: led.peek(caps=caps, windows=windows, tokens=tokens, micros=micros, fresh=keys),
        fresh,
    )


def cap_doc(
    cap: Cap, state: CounterState, *, currency: str, tokens: int = 0, micros: int = 0
) -> tuple[str, dict[str, Any]]:
    """A refusal's sentence and its `details` (the same figures as `turn.failed.budget`)."""
    bounds = window_bounds(cap.counter.window)
    used_t = state.spent_tokens + state.reserved_tokens
    used_c = from_micros(state.spent_micros + state.reserved_micros)
    details: dict[str, Any] = {
        "scope": cap.counter.scope,
        "budget_id": cap.budget_id,
        "label": cap.label,
        "period": cap.period,
        "tokens_used": used_t,
        "tokens_limit": cap.max_tokens,
        "cost_used": f"{used_c:.4f}",
        "cost_limit": None if cap.max_micros is None else f"{from_micros(cap.max_micros):.4f}",
        "currency": currency,
        "resets_at": bounds[1].isoformat().replace("+00:00", "Z") if bounds else None,
    }
    over_money = cap.max_micros is not None and (
        state.spent_micros + state.reserved_micros + micros > cap.max_micros
    )
    if over_money:
        spent = f"{used_c:.2f} of {from_micros(cap.max_micros or 0):.2f} {currency}"
        need = f"; this call may cost up to {from_micros(micros):.2f}" if micros else ""
    else:
        spent = f"{used_t} of {cap.max_tokens} tokens"
        need = f"; this call may use up to {tokens}" if tokens else ""
    where = f"{cap.label}" + (f" ({cap.period})" if cap.period not in cap.label else "")
    return f"{where}: {spent} spent or held{need}", details


def admission_check(
    *,
    caps: Sequence[Cap],
    windows: Sequence[RateWindow],
    currency: str = "",
    fresh: Collection[str] = (),
) -> dict[str, CounterState]:
    """At enqueue: refuse a turn whose caps have no room left at all, or whose rate windows
    are full. Holds nothing; the states otherwise. `fresh` as for `reserve`."""
    result = peek(caps=caps, windows=windows, tokens=1, micros=1, fresh=fresh)
    if result.kind == "over" and result.cap is not None:
        state = result.states[result.cap.counter.key]
        message, details = cap_doc(result.cap, state, currency=currency)
        raise BudgetExhausted(message, details=details)
    if result.kind == "rate" and result.window is not None:
        window, wait = result.window, max(1.0, result.retry_after_s)
        raise RateLimited(
            f"The {window.scope}'s model {window.kind} limit ({window.limit} per minute) "
            f"is used up; try again in {int(-(-wait // 1))} s.",
            retry_after=wait,
            details={"scope": window.scope, "kind": window.kind, "retry_after": wait},
        )
    return dict(result.states)


def stats_incr(name: str) -> None:
    """Count an event for /metrics (refusals, rate limits, expired holds, overruns)."""
    try:
        ledger().stats_incr(name)
    except redis.RedisError:
        logger.warning("budget stats not counted", extra={"stat": name})


# --------------------------------------------------------------------------- ledger rows

_COLUMNS = (
    "id",
    "tenant_id",
    "created_at",
    "updated_at",
    "reservation_id",
    "turn_id",
    "session_id",
    "agent_id",
    "agent_slug",
    "user_id",
    "node_id",
    "endpoint_name",
    "model",
    "input_tokens",
    "output_tokens",
    "cost",
    "currency",
    "estimated",
    "kind",
    "reserved_tokens",
    "reserved_cost",
    "overrun",
    "trace_id",
)
# A late settle of a call the reconciler charged at its hold replaces the charge with the
# truth (kind back to `call`); so does a settle retried after a crash.
_UPDATED = (
    "endpoint_name",
    "model",
    "input_tokens",
    "output_tokens",
    "cost",
    "estimated",
    "kind",
    "reserved_tokens",
    "reserved_cost",
    "overrun",
    "trace_id",
)


def _insert_sql(row: UsageRow, *, on_conflict: str) -> tuple[str, list[Any]]:
    now = datetime.now(UTC)
    params: list[Any] = [
        uuid.uuid4(),
        row.tenant_id,
        now,
        now,
        row.reservation_id,
        row.turn_id,
        row.session_id,
        row.agent_id,
        row.agent_slug[:100],
        row.user_id,
        row.node_id[:200],
        row.endpoint_name[:100],
        row.model[:200],
        row.input_tokens,
        row.output_tokens,
        row.cost,
        row.currency,
        row.estimated,
        row.kind,
        row.reserved_tokens,
        row.reserved_cost,
        row.overrun,
        row.trace_id,
    ]
    table = UsageRecord._meta.db_table
    values = ", ".join(["%s"] * len(_COLUMNS))
    # Column and table names are this module's constants; every value is a parameter.
    sql = (
        f"INSERT INTO {table} ({', '.join(_COLUMNS)}) VALUES ({values}) "  # noqa: S608
        "ON CONFLICT (reservation_id) "
    )
    if on_conflict == "update":
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*_UPDATED, "updated_at"))
        sql += f"DO UPDATE SET {sets}"
    else:
        sql += "DO NOTHING"
    return sql, params


def usage_upsert_sql(row: UsageRow) -> tuple[str, list[Any]]:
    """`u AS (INSERT … ON CONFLICT (reservation_id) DO UPDATE … RETURNING 1)` and its
    parameters: a CTE the settle statement that updates turn and session counters starts
    with, so the ledger row costs no round trip of its own."""
    sql, params = _insert_sql(row, on_conflict="update")
    return f"u AS ({sql} RETURNING 1)", params


def usage_record(row: UsageRow) -> None:
    """Write (or correct) one ledger row on its own."""
    sql, params = _insert_sql(row, on_conflict="update")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _expired_row(
    reservation_id: str, tokens: int, micros: int, meta: Mapping[str, Any]
) -> UsageRow:
    cost = Decimal(str(meta["cost"])) if meta.get("cost") not in (None, "") else from_micros(micros)
    user_id = meta.get("user_id")
    return UsageRow(
        tenant_id=str(meta["tenant_id"]),
        reservation_id=reservation_id,
        turn_id=meta.get("turn_id"),
        session_id=meta.get("session_id"),
        agent_id=meta.get("agent_id"),
        agent_slug=str(meta.get("agent_slug") or ""),
        user_id=int(user_id) if user_id not in (None, "") else None,
        node_id=str(meta.get("node_id") or ""),
        endpoint_name=str(meta.get("endpoint_name") or ""),
        currency=str(meta.get("currency") or settings.WARDEN_BUDGET_DEFAULT_CURRENCY),
        input_tokens=tokens,
        cost=cost,
        estimated=True,
        kind=UsageKind.EXPIRED_RESERVATION,
        reserved_tokens=tokens,
        reserved_cost=cost,
    )


def _still_there(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A hold's meta as its ledger row can reference it: None when its tenant is gone; without
    its user when the user is (the row's foreign keys would refuse it)."""
    if not Tenant.objects.filter(id=meta["tenant_id"]).exists():
        return None
    user_id = meta.get("user_id")
    if user_id not in (None, "") and not get_user_model().objects.filter(id=user_id).exists():
        return {**meta, "user_id": None}
    return meta


def _settle_from_row(reservation_id: str, counter_keys: Sequence[str]) -> bool:
    """Settle a due hold whose call's ledger row is committed (its worker died after the
    commit, before the Redis settle; or the settle waits for its turn's next call) at the
    row's truth rather than charge the hold. False if there is no such row."""
    row = (
        UsageRecord.objects.filter(reservation_id=reservation_id, kind=UsageKind.CALL)
        .values_list("input_tokens", "output_tokens", "cost")
        .first()
    )
    if row is None:
        return False
    tokens_in, tokens_out, cost = row
    ledger().settle_counters(
        reservation_id, counter_keys, tokens=tokens_in + tokens_out, micros=to_micros(cost)
    )
    return True


def reservations_reconcile(*, now_s: float | None = None, limit: int = 500) -> int:
    """Charge the holds whose deadline has passed (their worker died between reserve and
    settle): one `expired_reservation` row each, at the hold, and the hold moved from
    reserved to spent. Charged, not refunded: the dead worker's request may have reached
    the provider, and Warden can't know if it was billed. Both steps are idempotent, so a
    reconciler dying in between redoes them; a late settle corrects both to the truth.
    A hold whose call has its ledger row already is settled at the row instead (stat
    `settled_late`). Returns how many it charged."""
    led = ledger()
    now_s = time.time() if now_s is None else now_s
    charged = 0
    try:
        for reservation_id in led.due(now_s, limit):
            hold = led.hold(reservation_id)
            if (
                hold is not None
                and hold.state == "open"
                and _settle_from_row(
                    reservation_id, [str(k) for k in hold.meta.get("counters", [])]
                )
            ):
                led.stats_incr("settled_late")
                continue
            if hold is not None and hold.state == "open" and hold.meta.get("tenant_id"):
                meta = _still_there(hold.meta)
                if meta is None:
                    # The hold's tenant was deleted since: nobody is left to charge. Expire it
                    # all the same, or it would stay first in line, failing, and stop every
                    # later hold from being reconciled.
                    logger.warning(
                        "expired hold of a deleted tenant dropped",
                        extra={"reservation": reservation_id},
                    )
                else:
                    sql, params = _insert_sql(
                        _expired_row(reservation_id, hold.tokens, hold.micros, meta),
                        on_conflict="nothing",
                    )
                    with connection.cursor() as cursor:
                        cursor.execute(sql, params)
            if led.expire(reservation_id, hold) is not None:
                charged += 1
                led.stats_incr("expired")
    except redis.RedisError as exc:
        logger.warning("reconcile stopped: ledger unreachable", extra={"error": type(exc).__name__})
    return charged


# --------------------------------------------------------------------------- figures


def _latest_target(budget: Budget, field: str) -> Any:
    rows = UsageRecord.objects.filter(tenant_id=budget.tenant_id).exclude(**{field: None})
    if budget.agent_id is not None:
        rows = rows.filter(agent_id=budget.agent_id)
    return rows.order_by("-created_at").values_list(field, flat=True).first()


def budget_figures(
    *,
    budget: Budget,
    session_id: Any = None,
    turn_id: Any = None,
    at: datetime | None = None,
) -> BudgetFigures:
    """A budget's current window: spent (the ledger's sum), held (Redis; 0 if the counter is
    not loaded or Redis is down), the fraction used and its state. Session and turn budgets
    show the given session (turn), else the latest one that spent."""
    at = at or datetime.now(UTC)
    target: Any = {
        Scope.TENANT: budget.tenant_id,
        Scope.AGENT: budget.agent_id,
        Scope.USER: budget.user_id,
        Scope.SESSION: session_id or _latest_target(budget, "session_id"),
        Scope.TURN: turn_id or _latest_target(budget, "turn_id"),
    }[Scope(budget.scope)]
    if target is None:
        return BudgetFigures("", None, None, 0, Decimal(0), 0, Decimal(0), 0.0, "ok")
    counter = counter_for(
        prefix=str(settings.WARDEN_BUDGET_REDIS_PREFIX),
        tenant_id=str(budget.tenant_id),
        scope=budget.scope,
        target=str(target),
        period=budget.period,
        at=at,
    )
    tokens, micros, cost = ledger_sums(counter)
    held = CounterState()
    try:
        held = ledger().states([counter]).get(counter.key) or CounterState()
    except redis.RedisError:
        logger.warning("budget figures without holds: ledger unreachable")
    cap = _cap(budget, counter)
    used = fraction(cap, CounterState(tokens, micros, held.reserved_tokens, held.reserved_micros))
    bounds = window_bounds(counter.window)
    return BudgetFigures(
        window=counter.window,
        start=bounds[0] if bounds else None,
        end=bounds[1] if bounds else None,
        spent_tokens=tokens,
        spent_cost=cost,
        reserved_tokens=held.reserved_tokens,
        reserved_cost=from_micros(held.reserved_micros),
        fraction=used,
        state=state_of(used),
    )
