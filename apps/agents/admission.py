"""Admission control: what `turn_enqueue` checks before a turn is queued.

In order, cheapest first: the message's size (with a hint to split it), backpressure (the
queue of turns waiting for a worker: past the soft limits a turn is admitted degraded, past
the hard ones refused 503 with Retry-After), the budgets' headroom and the rate windows (one
Redis step, holding nothing: a cap already spent is 409 `budget_exceeded`, a full window 429
`rate_limited`), and whether the prompt fits the model (400 `prompt_too_long`, or with
`allow_model_upgrade` a larger-context endpoint only).

The last reads the tenant's endpoints through a router kept per process for
WARDEN_BUDGET_CONFIG_CACHE_SECONDS, as the budgets themselves are: an endpoint edit reaches
admission within that, and `POST /turns` reads no endpoint rows for a busy tenant. The worker
builds its router from the rows at every turn start, so no call is ever routed on this copy.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.db.models.functions import Length

from apps.agents.budgeting import builtin_caps
from apps.agents.exceptions import (
    Backpressure,
    MessageInvalid,
    PromptTooLong,
    UnpricedEndpoints,
)
from apps.agents.models import AgentSession, Turn, TurnStatus
from apps.budgets.backpressure import Backlog, State, Thresholds, classify
from apps.budgets.services import ledger as budget_ledger
from apps.llm.router import ModelRouter
from apps.llm.services import router_for_tenant
from apps.llm.types import EndpointUnpriced, ModelRequest

# A tool's schema and description in the prompt, and a chat message's framing, in tokens.
TOKENS_PER_TOOL = 150
DEGRADED = ["small_tier", "trim_tools"]


@dataclass(frozen=True)
class Admission:
    degraded: list[str] = field(default_factory=list)
    min_context_tokens: int = 0


# --------------------------------------------------------------------------- backpressure

# Only each session's head-of-queue turn counts: one queued behind its own session's running
# or parked turn waits for order, not for a worker.
_BACKLOG_SQL = f"""
    SELECT count(*), EXTRACT(EPOCH FROM (now() - min(t.created_at)))
    FROM {Turn._meta.db_table} t
    WHERE t.status = 'queued' AND NOT EXISTS (
        SELECT 1 FROM {Turn._meta.db_table} e
        WHERE e.session_id = t.session_id AND e.seq < t.seq
        AND e.status IN ('queued', 'running', 'waiting'))
"""  # noqa: S608

_measured: tuple[float, Backlog] | None = None
_lock = threading.Lock()


def thresholds() -> Thresholds:
    return Thresholds(
        degrade_depth=int(settings.WARDEN_BACKPRESSURE_DEGRADE_DEPTH),
        degrade_age_s=float(settings.WARDEN_BACKPRESSURE_DEGRADE_AGE_SECONDS),
        refuse_depth=int(settings.WARDEN_BACKPRESSURE_REFUSE_DEPTH),
        refuse_age_s=float(settings.WARDEN_BACKPRESSURE_REFUSE_AGE_SECONDS),
    )


def backlog() -> Backlog:
    """Turns waiting for a worker, measured at most every WARDEN_BACKPRESSURE_CACHE_SECONDS
    per process."""
    global _measured
    ttl = float(settings.WARDEN_BACKPRESSURE_CACHE_SECONDS)
    now = time.monotonic()
    with _lock:
        if ttl > 0 and _measured is not None and _measured[0] > now:
            return _measured[1]
    with connection.cursor() as cursor:
        cursor.execute(_BACKLOG_SQL)
        depth, age = cursor.fetchone()
    measured = Backlog(depth=int(depth or 0), oldest_age_s=float(age or 0.0))
    with _lock:
        _measured = (now + ttl, measured)
    return measured


def backpressure_state() -> tuple[State, Backlog]:
    measured = backlog()
    return classify(measured, thresholds()), measured


def backpressure_detail() -> dict[str, Any]:
    """/readyz detail: the state and the figures it comes from."""
    state, measured = backpressure_state()
    limits = thresholds()
    return {
        "state": state,
        "queued_turns": measured.depth,
        "oldest_queued_age_s": round(measured.oldest_age_s, 3),
        "degrade_at": {"depth": limits.degrade_depth, "age_s": limits.degrade_age_s},
        "refuse_at": {"depth": limits.refuse_depth, "age_s": limits.refuse_age_s},
    }


# --------------------------------------------------------------------------- admission


def _size(message: str) -> None:
    limit = int(settings.WARDEN_MAX_MESSAGE_CHARS)
    if len(message) > limit:
        parts = -(-len(message) // limit)
        raise MessageInvalid(
            f"The message has {len(message):,} characters; the limit is {limit:,}. "
            f"Split it into {parts} messages of at most {limit:,} characters.",
            code="message_too_long",
            details={"length": len(message), "limit": limit, "parts": parts},
        )


def _prompt_tokens(session: AgentSession, message: str) -> int:
    """A rough prompt size (4 characters a token): the system prompt, the conversation so
    far, the message, the tools' descriptions and the output allowance."""
    agent = session.agent
    history = 0
    if session.next_seq > 1:  # a first turn has no conversation to read
        history = (
            Turn.objects.filter(session=session, status=TurnStatus.COMPLETED).aggregate(
                chars=Sum(Length("user_message") + Length("final_answer"))
            )["chars"]
            or 0
        )
    chars = len(agent.system_prompt) + int(history) + len(message)
    return (
        chars // 4
        + TOKENS_PER_TOOL * len(agent.allowed_tools)
        + min(1024, agent.max_output_tokens_per_turn)
    )


_routers: dict[str, tuple[float, ModelRouter]] = {}


def _router(tenant_id: Any) -> ModelRouter:
    """The tenant's router, re-read at most every WARDEN_BUDGET_CONFIG_CACHE_SECONDS (module
    docstring)."""
    ttl = float(settings.WARDEN_BUDGET_CONFIG_CACHE_SECONDS)
    if ttl <= 0:
        return router_for_tenant(tenant_id=tenant_id)
    key, now = str(tenant_id), time.monotonic()
    hit = _routers.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    router = router_for_tenant(tenant_id=tenant_id)
    _routers[key] = (now + ttl, router)
    return router


def _context(session: AgentSession, message: str, *, allow_model_upgrade: bool) -> int:
    agent = session.agent
    router = _router(session.tenant_id)
    need = _prompt_tokens(session, message)
    if router.endpoints and not any(e.refused for e in router.endpoints):
        if need <= min(e.context_window for e in router.endpoints):
            # Whichever endpoint answers takes the prompt, and none is refused for want of a
            # price: nothing to refuse, without reading which endpoints the agent may use.
            return 0
    allowed = [e.name for e in agent.allowed_endpoints.all()] or None
    first = router.first_choice(
        tier=agent.model_tier,  # type: ignore[arg-type]
        sensitivity=session.data_sensitivity,
        allowed=allowed,
    )
    if first is None:
        error = router.no_endpoint_error(
            ModelRequest(messages=()),
            tier=agent.model_tier,  # type: ignore[arg-type]
            sensitivity=session.data_sensitivity,
            allowed=allowed,
        )
        if isinstance(error, EndpointUnpriced):
            # Nothing would be called: refuse now, saying what to fix, rather than queue a
            # turn that can only fail.
            raise UnpricedEndpoints(str(error))
        return 0  # the turn fails at its first call with the router's reason
    if need <= first.context_window:
        return 0
    larger = [
        e
        for e in router.endpoints
        if (allowed is None or e.name in allowed)
        and e.allows(session.data_sensitivity)
        and e.context_window >= need
    ]
    if allow_model_upgrade and larger:
        return need
    hint = (
        'Resend it with "allow_model_upgrade": true to use a larger-context model.'
        if larger
        else "Shorten the message or start a new session."
    )
    raise PromptTooLong(
        f"The prompt needs about {need:,} tokens; {first.name!r} takes {first.context_window:,}. "
        + hint,
        details={
            "prompt_tokens": need,
            "context_window": first.context_window,
            "endpoint": first.name,
            "larger_model_available": bool(larger),
            "hint": hint,
        },
    )


def turn_admit(
    *, session: AgentSession, message: str, user_id: int | None, allow_model_upgrade: bool
) -> Admission:
    """Admit a turn or raise why not (module docstring)."""
    _size(message)
    state, _ = backpressure_state()
    if state == "refusing":
        raise Backpressure(
            "The workers are too far behind to take this turn now; try again shortly.",
            retry_after=float(settings.WARDEN_BACKPRESSURE_RETRY_AFTER_SECONDS),
        )
    agent = session.agent
    caps = budget_ledger.caps_for_turn(
        tenant_id=session.tenant_id,
        agent_id=agent.id,
        user_id=user_id,
        session_id=session.id,
        turn_id=None,
        builtin=[c for c in builtin_caps(agent) if c.scope == "session"],
    )
    budget_ledger.admission_check(
        caps=caps,
        windows=budget_ledger.windows_for(tenant_id=session.tenant_id, user_id=user_id),
        currency=budget_ledger.currency_for(tenant_id=session.tenant_id),
        # A session with no turn yet has made no call: its counter loads as zero.
        fresh=(str(session.id),) if session.next_seq == 1 else (),
    )
    min_context = _context(session, message, allow_model_upgrade=allow_model_upgrade)
    return Admission(
        degraded=list(DEGRADED) if state == "degraded" else [], min_context_tokens=min_context
    )
