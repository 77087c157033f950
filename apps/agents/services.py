"""Writes for agents, sessions and turns."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.agents.events import event_published, event_record, new_event
from apps.agents.exceptions import (
    AgentInactive,
    MessageInvalid,
    SessionNotActive,
    TurnBacklogFull,
    TurnNotCancellable,
)
from apps.agents.models import (
    TERMINAL_TURN_STATUSES,
    Agent,
    AgentSession,
    SessionStatus,
    Turn,
    TurnStatus,
)
from apps.approvals import services as approval_services
from apps.core import batch
from apps.core.background import run_in_background
from apps.core.context import current_request_id
from apps.core.exceptions import Conflict, InvalidInput
from apps.llm.models import ModelEndpoint, Sensitivity
from apps.tenants.models import Tenant

logger = logging.getLogger("warden.agents")

# The Celery task that runs a turn (apps/agents/tasks.py registers it under this name).
RUN_TURN_TASK = "agents.run_turn"

_AGENT_FIELDS = {
    "name",
    "slug",
    "description",
    "system_prompt",
    "model_tier",
    "allowed_tools",
    "max_steps",
    "data_sensitivity",
    "max_input_tokens_per_turn",
    "max_output_tokens_per_turn",
    "max_tokens_per_session",
    "is_active",
}


def agent_save(
    *,
    tenant: Tenant,
    agent: Agent | None = None,
    allowed_endpoints: list[ModelEndpoint] | None = None,
    **fields: Any,
) -> Agent:
    unknown = set(fields) - _AGENT_FIELDS
    if unknown:
        raise InvalidInput(f"Unknown agent fields: {', '.join(sorted(unknown))}.")
    agent = agent or Agent(tenant=tenant)
    for name, value in fields.items():
        setattr(agent, name, value)
    if not isinstance(agent.allowed_tools, list) or not all(
        isinstance(t, str) for t in agent.allowed_tools
    ):
        raise InvalidInput("allowed_tools must be a list of tool names.", code="invalid_tools")
    if agent.max_steps < 1 or agent.max_steps > 100:
        raise InvalidInput("max_steps must be between 1 and 100.", code="invalid_max_steps")
    if allowed_endpoints and any(e.tenant_id != tenant.id for e in allowed_endpoints):
        raise InvalidInput("Unknown model endpoint.", code="unknown_endpoint")
    try:
        with transaction.atomic():
            agent.save()
            if allowed_endpoints is not None:
                agent.allowed_endpoints.set(allowed_endpoints)
    except IntegrityError as exc:
        raise Conflict(f"An agent with slug {agent.slug!r} exists.", code="slug_taken") from exc
    return agent


def session_create(
    *,
    tenant: Tenant,
    agent: Agent,
    user: User | None,
    title: str = "",
    environment: str = "dev",
    risk_tier: str = "low",
    data_sensitivity: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> AgentSession:
    if agent.tenant_id != tenant.id:
        raise InvalidInput("Unknown agent.", code="unknown_agent")
    if not agent.is_active:
        raise AgentInactive(f"Agent {agent.name!r} is disabled.")
    sensitivity = data_sensitivity or agent.data_sensitivity
    # A session may raise its sensitivity above the agent's default, never lower it.
    order = list(Sensitivity.values)
    if order.index(sensitivity) < order.index(agent.data_sensitivity):
        raise InvalidInput(
            f"data_sensitivity can't be below the agent's ({agent.data_sensitivity}).",
            code="sensitivity_too_low",
        )
    return AgentSession.objects.create(
        tenant=tenant,
        agent=agent,
        user=user if user and user.is_authenticated else None,
        title=title,
        environment=environment,
        risk_tier=risk_tier,
        data_sensitivity=sensitivity,
        metadata=metadata or {},
    )


def session_rename(*, session: AgentSession, title: str) -> AgentSession:
    """Give a session a new title (the chat's session list shows it); blank clears it."""
    title = title.strip()
    if len(title) > 200:
        raise InvalidInput("A title has at most 200 characters.", code="title_too_long")
    session.title = title
    session.save(update_fields=["title", "updated_at"])
    return session


def session_state_set(
    *, session: AgentSession, state: dict[str, Any], ttl_seconds: int | None = None
) -> AgentSession:
    ttl = ttl_seconds if ttl_seconds is not None else settings.WARDEN_SESSION_STATE_TTL_SECONDS
    session.state = state
    session.state_expires_at = timezone.now() + timedelta(seconds=ttl)
    session.save(update_fields=["state", "state_expires_at", "updated_at"])
    return session


def session_state_get(*, session: AgentSession) -> dict[str, Any]:
    if session.state_expires_at and session.state_expires_at <= timezone.now():
        return {}
    return dict(session.state)


def session_close(*, session: AgentSession, cancel: bool = False) -> AgentSession:
    """Close (or cancel) a session: queued turns are cancelled, a running one asked to stop."""
    with transaction.atomic():
        session = AgentSession.objects.select_for_update().get(id=session.id)
        if session.status != SessionStatus.ACTIVE:
            return session
        session.status = SessionStatus.CANCELLED if cancel else SessionStatus.CLOSED
        session.save(update_fields=["status", "updated_at"])
        for turn in session.turns.exclude(status__in=TERMINAL_TURN_STATUSES):
            _cancel(turn)
    return session


# turn_enqueue's read of the session under its row lock, with the agent's state and the queued
# turns of the session and of the tenant. Written once, not built with the ORM at every
# `POST /turns`: compiling the same query from a QuerySet took ~0.8 ms of CPU a request.
_T, _S, _A = Turn._meta.db_table, AgentSession._meta.db_table, Agent._meta.db_table
_SESSION_FOR_TURN_SQL = f"""
    SELECT s.status, s.next_seq, a.is_active,
        (SELECT count(*) FROM {_T} q WHERE q.status = %(queued)s AND q.session_id = s.id),
        (SELECT count(*) FROM {_T} q WHERE q.status = %(queued)s AND q.tenant_id = s.tenant_id)
    FROM {_S} s JOIN {_A} a ON a.id = s.agent_id
    WHERE s.id = %(session)s
    FOR UPDATE OF s
"""  # noqa: S608 (table names from the models; the values are parameters)


def turn_enqueue(
    *,
    session: AgentSession,
    message: Any,
    requested_by: User | None = None,
    allow_model_upgrade: bool = False,
) -> Turn:
    """Accept a user message as a queued turn; the worker picks it up after commit.
    Admission control (apps/agents/admission.py) first: size, backpressure, budgets and
    rate limits, the model's context window."""
    from apps.agents.admission import turn_admit

    if not isinstance(message, str) or not message.strip():
        raise MessageInvalid("The message is empty.", code="empty_message")
    requester = requested_by if requested_by and requested_by.is_authenticated else None
    admitted = turn_admit(
        session=session,
        message=message,
        user_id=requester.pk if requester is not None else session.user_id,
        allow_model_upgrade=allow_model_upgrade,
    )
    with transaction.atomic():
        # The row lock orders concurrent messages of one session: seq is gap-free. The
        # backlogs are counted in the same query.
        with connection.cursor() as cursor:
            cursor.execute(
                _SESSION_FOR_TURN_SQL, {"queued": TurnStatus.QUEUED.value, "session": session.id}
            )
            locked = cursor.fetchone()
        if locked is None:
            raise AgentSession.DoesNotExist("The session was deleted.")
        session.status, session.next_seq, session.agent.is_active, queued_here, queued_tenant = (
            locked
        )
        if session.status != SessionStatus.ACTIVE:
            raise SessionNotActive(f"This session is {session.status}; start a new one.")
        if not session.agent.is_active:
            raise AgentInactive(f"Agent {session.agent.name!r} is disabled.")
        # Backpressure, per session (409: this conversation is flooded) and per tenant (503:
        # the workers are behind; retry later). The tenant's backlog bounds what one tenant
        # can pile onto the queue; counted without a lock, so a burst may overshoot by the
        # number of requests in flight at that moment.
        pending = queued_here
        if pending >= settings.WARDEN_MAX_QUEUED_TURNS:
            raise Conflict(
                f"{pending} turns are already queued on this session; wait for them.",
                code="too_many_queued_turns",
            )
        if queued_tenant >= settings.WARDEN_MAX_QUEUED_TURNS_PER_TENANT:
            raise TurnBacklogFull(
                f"{settings.WARDEN_MAX_QUEUED_TURNS_PER_TENANT} turns of this tenant are waiting "
                "for a worker; try again shortly."
            )
        turn = Turn(
            tenant_id=session.tenant_id,
            session=session,
            seq=session.next_seq,
            user_message=message,
            requested_by=requester,
            request_id=current_request_id() or "",
            degraded=admitted.degraded,
            min_context_tokens=admitted.min_context_tokens,
        )
        payload: dict[str, Any] = {"turn_id": str(turn.id), "seq": turn.seq, "message": message}
        if admitted.degraded:
            payload["degraded"] = admitted.degraded
        if admitted.min_context_tokens:
            payload["min_context_tokens"] = admitted.min_context_tokens
        accepted = new_event(session=session, turn=turn, event="turn.accepted", data=payload)
        session.next_seq += 1
        # The turn, the session's next seq and the accepted event: one round trip.
        *_, event = batch.execute(
            [
                batch.insert(turn),
                batch.update(
                    AgentSession.objects.filter(id=session.id),
                    next_seq=session.next_seq,
                    updated_at=timezone.now(),
                ),
                batch.insert(accepted, returning=True),
            ]
        )
        assert event.rows, "an event INSERT returns its id"
        accepted.id = event.rows[0][0]
        event_published(accepted)
        transaction.on_commit(
            lambda: turn_dispatch(
                turn_id=turn.id, session_id=turn.session_id, tenant_id=turn.tenant_id
            )
        )
    return turn


# How long a request waits for its turn's dispatch to have left (apps/core/background.py):
# normally well under a millisecond; a slow or unreachable broker costs the 202 no more.
DISPATCH_WAIT_S = 0.005


def turn_dispatch(*, turn_id: Any, session_id: Any = None, tenant_id: Any = None) -> None:
    """Hand the turn to a worker, from the process's background sender: a 202 does not wait
    on the broker. A broker outage, or a process that dies first, leaves the turn queued;
    the recovery sweep re-dispatches it.

    The task is named, not imported: tasks.py imports the orchestrator, which imports this
    module. A signature of a registered task applies it as the task would (eagerly too)."""

    # With its session, the worker takes the session's lock before it reads the turn; with
    # its tenant too, a first run's `turn.started` goes with that read (orchestrator).
    args = [str(turn_id)]
    if session_id is not None:
        args += [str(session_id), *([str(tenant_id)] if tenant_id is not None else [])]

    def send() -> None:
        try:
            # No result to wait for: without ignore_result the result backend would
            # subscribe to (and later unsubscribe from) the task's result channel, two more
            # Redis round trips per dispatch.
            current_app.signature(RUN_TURN_TASK, args=args).apply_async(ignore_result=True)
        except Exception:  # the turn is durable; turns_recover will dispatch it again
            logger.exception("could not dispatch turn", extra={"turn_id": str(turn_id)})

    if settings.CELERY_TASK_ALWAYS_EAGER:  # runs the turn inline: keep it in the caller
        send()
    else:
        run_in_background(send, wait_s=DISPATCH_WAIT_S)


def _cancel(turn: Turn) -> None:
    if turn.status in (TurnStatus.QUEUED, TurnStatus.WAITING):
        if turn.status == TurnStatus.WAITING:
            # Nobody is left to wait for a decision: the queue stops showing the request.
            approval_services.approvals_withdraw_for_turn(
                turn_id=turn.id, reason="The turn was cancelled; the call was not run."
            )
        turn.status = TurnStatus.CANCELLED
        turn.outcome = "cancelled"
        turn.finished_at = timezone.now()
        turn.save(update_fields=["status", "outcome", "finished_at", "updated_at"])
        event_record(
            session=turn.session, turn=turn, event="turn.cancelled", data={"turn_id": str(turn.id)}
        )
    else:  # running: the worker stops at its next model or tool call
        turn.cancel_requested = True
        turn.save(update_fields=["cancel_requested", "updated_at"])


def turn_cancel(*, turn: Turn) -> Turn:
    with transaction.atomic():
        turn = Turn.objects.select_for_update().select_related("session").get(id=turn.id)
        if turn.status in TERMINAL_TURN_STATUSES:
            raise TurnNotCancellable(f"This turn is already {turn.status}.")
        _cancel(turn)
        session_id = turn.session_id
    if turn.status == TurnStatus.CANCELLED:
        turn_dispatch_next(session_id=session_id)
    return turn


def turn_dispatch_next(*, session_id: Any) -> None:
    """Dispatch the earliest unfinished turn of the session, if it is queued."""
    nxt = (
        Turn.objects.filter(session_id=session_id)
        .exclude(status__in=TERMINAL_TURN_STATUSES)
        .order_by("seq")
        .values_list("id", "status", "tenant_id")
        .first()
    )
    if nxt is not None and nxt[1] == TurnStatus.QUEUED:
        turn_dispatch(turn_id=nxt[0], session_id=session_id, tenant_id=nxt[2])
