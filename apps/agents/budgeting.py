"""The loop's budget over the budgets ledger (apps/budgets/services/ledger.py).

Before every model call the most the call can cost — its prompt's token bound plus its output
allowance, at the highest prices among the endpoints the router may fail over to for this
call (`ModelRouter.candidates`) — is held in every cap that applies (tenant, agent, user,
session, turn budgets and the agent's built-in caps), and counted in the rate windows, in one
atomic step, or nothing is held and the call is not made. After it the hold is replaced by
what the call used: one ledger row (`UsageRecord`) riding in the statement that adds the
tokens to the turn and the session, then the Redis counters. A failed call settles zero.
Model calls replayed from checkpoints are neither held nor settled again: their rows and
counters are already there.

The Redis settle of a call waits for the turn's next reserve and goes in the same step
(`PriorSettle`), or for `close()` at the end of the run: one round trip per call, not two.
Meanwhile the counters show the call's hold, never less than what it used, so other turns
see at least its spend; a call that used more than it held (an overrun) is settled at once.
The turn's own figures (warnings, `input.budget`) move as the settle would move them.

At 80 % of a cap the turn is warned once (`budget.warning`) and the cap's obligations switch
on: `small_tier` (the model port asks for the small tier), `compress_context` and
`trim_tools` (the loop shrinks the request). The policy input gets the same figures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, cast

from django.conf import settings

from apps.agents.adapters import TurnWrites
from apps.agents.models import Agent, AgentSession, Turn
from apps.agents.runtime.obligations import SMALL_TIER, TRIM_TOOLS
from apps.agents.runtime.ports import BudgetExceeded, Reservation, Settlement, StepContext
from apps.agents.runtime.transcript import input_token_bound
from apps.budgets.exceptions import BudgetUnavailable
from apps.budgets.ledger.redis_ledger import PriorSettle
from apps.budgets.ledger.types import (
    WARN_FRACTION,
    BuiltinCap,
    Cap,
    CounterState,
    RateWindow,
    UsageRow,
    fraction,
    from_micros,
    state_of,
    to_micros,
)
from apps.budgets.services import ledger as budget_ledger
from apps.core import batch
from apps.core.telemetry import current_trace_id
from apps.llm.providers.base import EndpointConfig, Tier
from apps.llm.router import ModelRouter
from apps.llm.types import ModelRequest, Usage

logger = logging.getLogger("warden.agents")

MTOK = Decimal(1_000_000)

# After the ledger row's CTE: the turn's and the session's token counters (table names from
# the models; every value is a parameter).
_COUNTERS_SQL = f"""
    t AS (
        UPDATE {Turn._meta.db_table}
        SET input_tokens = input_tokens + %s, output_tokens = output_tokens + %s
        WHERE id = %s RETURNING input_tokens, input_tokens + output_tokens AS used
    ), s AS (
        UPDATE {AgentSession._meta.db_table} SET tokens_used = tokens_used + %s
        WHERE id = %s RETURNING tokens_used
    )
    SELECT t.input_tokens, t.used, s.tokens_used FROM t, s
"""  # noqa: S608


def builtin_caps(agent: Agent) -> list[BuiltinCap]:
    """The agent's own caps, enforced like any budget (warn at 80 %, no obligations): tokens
    per turn (input + output) and per session. The input share of the turn cap is checked
    by `LedgerBudget` itself (a turn's calls are serial)."""
    return [
        BuiltinCap(
            scope="turn",
            max_tokens=agent.max_input_tokens_per_turn + agent.max_output_tokens_per_turn,
            label="agent per turn",
        ),
        BuiltinCap(
            scope="session", max_tokens=agent.max_tokens_per_session, label="agent per session"
        ),
    ]


def _figures(cap: Cap, state: CounterState) -> dict[str, Any]:
    return {
        "scope": cap.counter.scope,
        "budget_id": cap.budget_id,
        "label": cap.label,
        "period": cap.period,
        "window": cap.counter.window,
        "tokens_used": state.spent_tokens + state.reserved_tokens,
        "tokens_limit": cap.max_tokens,
        "cost_used": float(from_micros(state.spent_micros + state.reserved_micros)),
        "cost_limit": None if cap.max_micros is None else float(from_micros(cap.max_micros)),
        "fraction_used": round(fraction(cap, state), 6),
    }


@dataclass
class TurnBudgetState:
    """What one run of a turn knows about its caps; shared by the budget, the model port
    (the tier) and the policy gate (`input.budget`)."""

    agent_tier: str
    currency: str
    caps: list[Cap]
    obligations: set[str] = field(default_factory=set)
    states: dict[str, CounterState] = field(default_factory=dict)
    warned: set[str] = field(default_factory=set)

    def tier_for(self, attempt: int) -> Tier:
        """The small tier under `small_tier` (and no escalation then); else the agent's,
        escalated after repeated malformed output."""
        if "small_tier" in self.obligations:
            return "small"
        if attempt >= 2:
            return "large"
        return cast(Tier, self.agent_tier)

    def scopes(self) -> list[dict[str, Any]]:
        return [
            _figures(cap, self.states.get(cap.counter.key) or CounterState()) for cap in self.caps
        ]

    def snapshot(self, *, session_used: int, session_limit: int) -> dict[str, Any]:
        """`input.budget`: the session's tokens as before, and every cap's figures."""
        scopes = self.scopes()
        top = max((s["fraction_used"] for s in scopes), default=0.0)
        state = state_of(top)
        if state == "ok" and self.warned:
            # Warned this turn: the holds that crossed 80 % are settled, not gone for good.
            state = "warning"
        return {
            "tokens_used": session_used,
            "tokens_limit": session_limit,
            "fraction_used": round(session_used / session_limit, 6) if session_limit > 0 else 1.0,
            "state": state,
            "fraction_used_max": top,
            "obligations": sorted(self.obligations),
            "scopes": scopes,
        }


@dataclass(frozen=True)
class _Hold:
    tokens: int
    micros: int
    cost: Decimal
    node_id: str


class LedgerBudget:
    """The BudgetPort of a turn run (see the module docstring)."""

    def __init__(
        self,
        *,
        turn: Turn,
        session: AgentSession,
        agent: Agent,
        router: ModelRouter,
        allowed: Sequence[str] | None,
        caps: list[Cap],
        windows: list[RateWindow],
        state: TurnBudgetState,
        writes: TurnWrites,
        spent: tuple[int, int, int],
        first_run: bool = False,
        sleep: Any = time.sleep,
    ) -> None:
        """`spent`: (turn input, turn input + output, session) tokens as read under the
        session lock; only this run adds to them from here on. `first_run`: the turn never
        ran before, so the ledger has nothing for it yet."""
        self.turn, self.session, self.agent = turn, session, agent
        self.router, self.allowed = router, allowed
        self.caps, self.windows, self.state, self.writes = caps, windows, state, writes
        self._turn_in, self._turn_used, self._session_used = spent
        self._holds: dict[str, _Hold] = {}
        # A call whose ledger row is committed and whose Redis settle waits for the next
        # reserve (or `close`); at most one at a time.
        self._pending: PriorSettle | None = None
        self._closed = False
        self._first_run = first_run
        self._sleep = sleep
        self._user_id = turn.requested_by_id or session.user_id

    # ------------------------------------------------------------------ reading

    def session_used(self) -> int:
        return self._session_used

    def snapshot(self) -> dict[str, Any]:
        """`input.budget` of the policy input."""
        return self.state.snapshot(
            session_used=self._session_used, session_limit=self.agent.max_tokens_per_session
        )

    def start(self) -> None:
        """The states the turn starts from (nothing held): warnings and obligations of caps
        already at 80 %. Redis down: nothing known yet; the first reserve refuses."""
        try:
            # A first run's turn counter loads as zero without summing the ledger.
            fresh = (str(self.turn.id),) if self._first_run else ()
            result = budget_ledger.peek(caps=self.caps, windows=[], fresh=fresh)
        except BudgetUnavailable:
            return
        self._update(result.states)

    # ------------------------------------------------------------------ reserve

    def _pool(self) -> list[EndpointConfig]:
        pool = list(self.router.endpoints)
        if self.allowed is not None:
            pool = [e for e in pool if e.name in self.allowed]
        return pool

    def _candidates(self, request: ModelRequest | None) -> list[EndpointConfig]:
        """Every endpoint this call may reach: the router's candidates for each tier the
        model port may ask for (this attempt's, the agent's own when nothing is left in an
        escalated tier, the small tier if a cap may switch `small_tier` on at this very
        reserve), for the request as it may go (without tools, if `trim_tools` may trim
        them: fewer tools, more endpoints). Without a request: every allowed endpoint."""
        if request is None:
            return self._pool()
        possible = set(self.state.obligations)
        for cap in self.caps:
            possible |= cap.obligations
        if TRIM_TOOLS in possible and request.tools:
            request = replace(request, tools=())
        attempt = int(request.metadata.get("attempt", 0))
        tiers: list[Tier] = [self.state.tier_for(attempt), cast(Tier, self.agent.model_tier)]
        if SMALL_TIER in possible:
            tiers.append("small")
        found: dict[str, EndpointConfig] = {}
        for tier in dict.fromkeys(tiers):
            for endpoint in self.router.candidates(
                request,
                tier=tier,
                sensitivity=self.session.data_sensitivity,
                allowed=self.allowed,
            ):
                found.setdefault(endpoint.name, endpoint)
        # Nothing eligible: the call fails before reaching any endpoint; hold as before.
        return list(found.values()) or self._pool()

    def _emit(self, event_type: str, payload: dict[str, Any]) -> None:
        self.writes.event(event_type, {"turn_id": str(self.turn.id), **payload})

    def reserve(
        self, *, estimated_tokens: int, ctx: StepContext, request: ModelRequest | None = None
    ) -> Reservation:
        in_bound = input_token_bound(request) if request is not None else estimated_tokens
        out = request.max_output_tokens if request is not None else 0
        limit_in = self.agent.max_input_tokens_per_turn
        if self._turn_in + in_bound > limit_in:
            raise BudgetExceeded(
                f"agent per turn (input): {self._turn_in} of {limit_in} input tokens spent; "
                f"this call may use up to {in_bound}",
                scope={
                    "scope": "turn",
                    "budget_id": None,
                    "label": "agent per turn (input)",
                    "period": "turn",
                    "tokens_used": self._turn_in,
                    "tokens_limit": limit_in,
                    "resets_at": None,
                },
            )
        tokens = in_bound + out
        # The dearest endpoint the router may fail over to prices the hold (a free one: 0).
        candidates = self._candidates(request)
        price_in = max((e.price_input_per_mtok for e in candidates), default=Decimal(0))
        price_out = max((e.price_output_per_mtok for e in candidates), default=Decimal(0))
        cost = (in_bound * price_in + out * price_out) / MTOK
        micros = to_micros(cost)
        deadline = (
            time.time()
            + sum(e.timeout_s for e in candidates)
            + float(settings.WARDEN_BUDGET_RESERVATION_GRACE_SECONDS)
        )
        rid = f"{ctx.idempotency_key}@{self.turn.attempts}"
        meta = {
            "tenant_id": str(self.turn.tenant_id),
            "turn_id": str(self.turn.id),
            "session_id": str(self.session.id),
            "agent_id": str(self.agent.id),
            "agent_slug": self.agent.slug,
            "user_id": self._user_id,
            "node_id": ctx.idempotency_key,
            "currency": self.state.currency,
            "cost": str(cost),
        }
        waited = 0.0
        max_wait = float(settings.WARDEN_MODEL_RATE_MAX_WAIT_SECONDS)
        while True:
            try:
                result = budget_ledger.reserve(
                    reservation_id=rid,
                    caps=self.caps,
                    windows=self.windows,
                    tokens=tokens,
                    micros=micros,
                    deadline_s=deadline,
                    meta=meta,
                    settle=self._pending,
                )
            except BudgetUnavailable as exc:
                raise BudgetExceeded(str(exc), code="budget_unavailable") from None
            # The script ran: the earlier call is settled, whatever the reserve answered.
            self._pending = None
            if result.kind in ("ok", "dup"):
                break
            if result.kind == "over" and result.cap is not None:
                state = result.states.get(result.cap.counter.key) or CounterState()
                message, details = budget_ledger.cap_doc(
                    result.cap, state, currency=self.state.currency, tokens=tokens, micros=micros
                )
                raise BudgetExceeded(message, scope=details)
            window = result.window
            wait = max(0.05, result.retry_after_s)
            details = {
                "scope": window.scope if window else "",
                "kind": window.kind if window else "",
                "retry_after": round(wait, 3),
            }
            if waited + wait > max_wait:
                raise BudgetExceeded(
                    f"the {details['scope']}'s model {details['kind']} limit is used up "
                    f"(waited {waited:.0f} s)",
                    code="rate_limited",
                    scope=details,
                )
            self._emit("rate_limit.wait", details)
            self.writes.check_in()
            self._sleep(wait)
            waited += wait
        self._holds[rid] = _Hold(tokens, micros, cost, ctx.idempotency_key)
        self._update(result.states)
        return Reservation(
            id=rid, tokens=tokens, cost=f"{cost:.6f}", obligations=frozenset(self.state.obligations)
        )

    # ------------------------------------------------------------------ settle

    def settle(self, reservation: Reservation, *, usage: Usage, endpoint: str = "") -> Settlement:
        hold = self._holds.pop(reservation.id, None)
        if hold is None:  # not ours (nothing was held)
            return Settlement()
        config = next((e for e in self.router.endpoints if e.name == endpoint), None)
        cost = self.router.cost(config, usage) if config is not None else Decimal(0)
        used = usage.input_tokens + usage.output_tokens
        micros = to_micros(cost)
        overrun = used > hold.tokens or micros > hold.micros
        if used:
            # Only this run adds to the turn's and the session's counters (the session lock).
            self._turn_in += usage.input_tokens
            self._turn_used += used
            self._session_used += used
        if overrun:
            budget_ledger.stats_incr("overrun")
            self._emit(
                "budget.overrun",
                {
                    "node_id": hold.node_id,
                    "reserved_tokens": hold.tokens,
                    "reserved_cost": f"{hold.cost:.6f}",
                    "tokens": used,
                    "cost": f"{cost:.6f}",
                    "usage_estimated": usage.estimated,
                },
            )

        def settle_hold(_: batch.Result | None = None) -> None:
            prior = PriorSettle(reservation.id, used, micros)
            if overrun or self._closed:
                # An overrun goes to Redis at once: other turns must see the truth.
                self._settle_now(prior)
                return
            if self._pending is not None:
                self._settle_now(self._pending)
            self._pending = prior
            self._update(self._projected(hold, used, micros))

        if used:
            # The ledger row (and the turn's and session's counters) waits for the call's node
            # and goes with it; the hold is settled once the row is committed. A worker that
            # dies in between leaves the hold open, and the reconciler charges it.
            self.writes.later(
                self._statement(reservation.id, hold, usage, cost, config, overrun=overrun),
                then=settle_hold,
            )
        else:
            settle_hold()
        return Settlement(cost=f"{cost:.6f}", overrun=overrun, estimated=usage.estimated)

    def _settle_now(self, prior: PriorSettle) -> None:
        if self._pending == prior:
            self._pending = None
        try:
            states = budget_ledger.settle(
                reservation_id=prior.reservation_id,
                caps=self.caps,
                windows=self.windows,
                tokens=prior.tokens,
                micros=prior.micros,
            )
        except BudgetUnavailable:
            # The ledger row has the truth; past the hold's deadline the reconciler settles
            # it at that row (reservations_reconcile).
            logger.warning(
                "settle left to the reconciler", extra={"reservation": prior.reservation_id}
            )
        else:
            self._update(states)

    def _projected(self, hold: _Hold, used: int, micros: int) -> dict[str, CounterState]:
        """The counters as this settle will leave them (as last read; the next reserve reads
        them afresh)."""
        projected: dict[str, CounterState] = {}
        for key, s in self.state.states.items():
            projected[key] = CounterState(
                s.spent_tokens + used,
                s.spent_micros + micros,
                max(0, s.reserved_tokens - hold.tokens),
                max(0, s.reserved_micros - hold.micros),
            )
        return projected

    def close(self) -> None:
        """The run is over: settle what waits for a next reserve, and settle at once from
        now on (a row still queued is settled when it commits)."""
        self._closed = True
        if self._pending is not None:
            self._settle_now(self._pending)

    def _statement(
        self,
        rid: str,
        hold: _Hold,
        usage: Usage,
        cost: Decimal,
        config: EndpointConfig | None,
        *,
        overrun: bool,
    ) -> batch.Statement:
        """The ledger row and the turn's and session's token counters: one statement."""
        row = UsageRow(
            tenant_id=str(self.turn.tenant_id),
            reservation_id=rid,
            turn_id=str(self.turn.id),
            session_id=str(self.session.id),
            agent_id=str(self.agent.id),
            agent_slug=self.agent.slug,
            user_id=self._user_id,
            node_id=hold.node_id,
            endpoint_name=config.name if config else "",
            model=config.model if config else "",
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost=cost,
            currency=self.state.currency,
            estimated=usage.estimated,
            reserved_tokens=hold.tokens,
            reserved_cost=hold.cost,
            overrun=overrun,
            trace_id=current_trace_id(),
        )
        upsert, params = budget_ledger.usage_upsert_sql(row)
        spent = usage.input_tokens + usage.output_tokens
        return batch.Statement(
            f"WITH {upsert}, {_COUNTERS_SQL}",
            (
                *params,
                usage.input_tokens,
                usage.output_tokens,
                self.turn.id,
                spent,
                self.session.id,
            ),
        )

    # ------------------------------------------------------------------ 80 %

    def _update(self, states: Mapping[str, CounterState]) -> None:
        self.state.states.update(states)
        for cap in self.caps:
            state = states.get(cap.counter.key)
            if state is None:
                continue
            key = f"{cap.counter.key}|{cap.budget_id}"
            used = fraction(cap, state)
            if used < WARN_FRACTION or key in self.state.warned:
                continue
            self.state.warned.add(key)
            self.state.obligations |= set(cap.obligations)
            figures = _figures(cap, state)
            self._emit(
                "budget.warning",
                {
                    **figures,
                    "currency": self.state.currency,
                    "obligations": sorted(cap.obligations),
                },
            )
