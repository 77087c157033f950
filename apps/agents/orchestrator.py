"""Runs one turn: the session lock, the loop over Django-backed ports, the outcome.

The Durable-Object property — one turn per session at a time, in order — comes from a
Postgres advisory lock taken on the connection that runs the turn, and held for the length
of the turn. Its writes and its lock share a fate: if the worker dies, or just that
connection, the lock goes with it (and no write of the dead run can follow), so the
recovery sweep — which looks for running turns whose lock nobody holds — or the redelivered
task can take the turn over and resume it from its checkpoints.

A worker runs many turns at once, each on its own thread and its own pooled connection
(config/settings/database.py sizes the pool to the worker's turns).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any, NamedTuple, cast

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.agents.adapters import (
    BudgetView,
    DbCheckpointStore,
    DbEventSink,
    RouterModelPort,
    TenantPolicyGate,
    Toolbox,
    ToolJobPending,
    TurnCancelled,
    TurnWrites,
)
from apps.agents.approval_flow import (
    WAITING_OUTCOME as WAITING_APPROVAL,
)
from apps.agents.approval_flow import (
    approval_decision_for,
    approval_turns_recover,
    turn_resume_on_decision,
)
from apps.agents.budgeting import LedgerBudget, TurnBudgetState, builtin_caps
from apps.agents.compression import context_memory
from apps.agents.events import event_published, new_event
from apps.agents.metrics import metrics_flush
from apps.agents.models import (
    TERMINAL_TURN_STATUSES,
    ActionNode,
    Agent,
    AgentSession,
    SessionEvent,
    Turn,
    TurnStatus,
)
from apps.agents.runtime.loop import LoopConfig, TurnOutcome, run_turn, started_payload
from apps.agents.runtime.ports import PolicyGate
from apps.agents.services import turn_dispatch, turn_dispatch_next
from apps.approvals import services as approval_services
from apps.approvals.models import ApprovalStatus
from apps.budgets.services import ledger as budget_ledger
from apps.core import batch, telemetry
from apps.core.joined_read import JoinedRead, read_together
from apps.core.locks import LockNamespace, advisory_lock, advisory_unlocked
from apps.core.telemetry import metric_add
from apps.llm.models import ModelEndpoint
from apps.llm.router import ModelRouter
from apps.llm.services import router_for_tenant
from apps.policies.models import Policy, PolicyMode, PolicyVersion
from apps.tenants.models import Tenant
from apps.tools.models import McpServer, Tool

logger = logging.getLogger("warden.agents")


def session_lock(session_id: uuid.UUID) -> contextlib.AbstractContextManager[bool]:
    """Try to take the session's advisory lock; yields whether we hold it.

    Taken on this thread's database connection — the one the turn then writes with — so
    no extra connection per turn, and the lock cannot outlive the connection's writes.
    """
    return advisory_lock(LockNamespace.SESSION, session_id)


def _sessions_unlocked(session_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """The sessions among these whose lock nobody holds now (taken and released at once)."""
    return advisory_unlocked(LockNamespace.SESSION, session_ids)


_STATUS = {
    "completed": TurnStatus.COMPLETED,
    "waiting_approval": TurnStatus.WAITING,
    "failed": TurnStatus.FAILED,
    "max_steps_exceeded": TurnStatus.FAILED,
    "budget_exceeded": TurnStatus.FAILED,
}


def turn_execute(
    *,
    turn_id: uuid.UUID | str,
    session_id: uuid.UUID | str | None = None,
    tenant_id: uuid.UUID | str | None = None,
) -> str:
    """Run or resume the turn if it is its session's turn; returns what happened.

    `session_id` (the dispatched task carries it) lets the lock be taken first: the turn is
    then read once, under the lock. Without it, the turn's session is looked up first.
    `tenant_id` (dispatched with it since this release) lets a first run's `turn.started`
    be written by the statement that starts the turn (`_turn_locked`)."""
    if session_id is None:
        session_id = Turn.objects.filter(id=turn_id).values_list("session_id", flat=True).first()
        if session_id is None:
            return "missing"
    try:
        turn_id, session_id = uuid.UUID(str(turn_id)), uuid.UUID(str(session_id))
        tenant = uuid.UUID(str(tenant_id)) if tenant_id is not None else None
    except ValueError:
        return "missing"
    with session_lock(session_id) as held:
        if not held:
            # Another worker runs this session; it dispatches the next turn when done.
            return "session_busy"
        # One span for this run of the turn, from its start read: what the orchestration
        # does before and after the loop is in the trace too, and so are the events it
        # writes (`turn.started` with the read, the terminal ones after the loop returned).
        with telemetry.tracer.start_as_current_span(
            "turn_run", record_exception=False, set_status_on_exception=False
        ) as span:
            # Read under the lock, with the session (its token counter included), the
            # agent's allowed endpoints and whether an earlier turn of the session is
            # unfinished, and marked running if it runs now: one query. (Read before the
            # lock, a row could be older than the last holder's commit.)
            announce = _started_event(turn_id, session_id, tenant) if tenant else None
            turn = _turn_locked(turn_id, session_id, announce=announce)
            if turn is None or turn.is_terminal or turn.status == TurnStatus.WAITING:
                result = (
                    "missing"
                    if turn is None
                    else "already_finished"
                    if turn.is_terminal
                    else "waiting"
                )
                span.set_attribute("warden.turn.result", result)
                return result
            blocked = bool(turn.blocked)  # type: ignore[attr-defined]
            result = "blocked_by_earlier_turn" if blocked else _run_locked(turn, span)
            span.set_attribute("warden.turn.result", result)
    # Blocked: the earlier turn's own task may have found the lock held by this one (it
    # returned session_busy, trusting the holder to dispatch next): dispatch it again, or it
    # would wait for the recovery sweep. A duplicate task finds it running or finished.
    turn_dispatch_next(session_id=turn.session_id)
    return result


def _started_event(turn_id: uuid.UUID, session_id: uuid.UUID, tenant_id: uuid.UUID) -> SessionEvent:
    """The `turn.started` a first run emits (`started_payload`), unsaved, for the statement
    that starts the turn to write."""
    session = AgentSession(id=session_id, tenant_id=tenant_id)
    event, data = _first_run_started(turn_id)
    return new_event(
        session=session,
        turn=Turn(id=turn_id, tenant_id=tenant_id, session=session),
        event=event,
        data=data,
    )


def _first_run_started(turn_id: uuid.UUID) -> tuple[str, dict[str, Any]]:
    """`turn.started` as the loop emits it for a first run (its emit adds the turn's id)."""
    return "turn.started", {"turn_id": str(turn_id), **started_payload(replayed=0)}


def _turn_locked(
    turn_id: uuid.UUID | str, session_id: uuid.UUID, *, announce: SessionEvent | None = None
) -> Turn | None:
    """The turn with its session, agent and tenant, whether an earlier turn of the session is
    unfinished (`blocked`) and the agent's allowed endpoints (`allowed_endpoint_names`).

    In the same statement, a turn that runs now (neither finished, nor waiting, nor behind
    an unfinished earlier turn) is marked running, its attempts counted and its heartbeat
    set (`started`); the instance shows it as the row now stands. `announce`: the first
    run's `turn.started`, stored by that statement too when this is the turn's first run, it
    is not being cancelled and the event's tenant is the turn's (`turn.announced`: the
    event, published; else None)."""
    now = timezone.now()
    params: dict[str, Any] = {"turn": str(turn_id), "session": str(session_id), "now": now}
    if announce is not None:
        params.update(_event_params(announce))
    found, endpoints, tools, policies = read_together(
        [_turn_read(announce=announce is not None), *_catalog_reads()], params
    )
    if not found:
        return None
    [(built, (blocked, allowed, started, *announced))] = found
    turn_announced = None
    if announce is not None and announced[0] is not None:
        announce.id = announced[0]
        event_published(announce)  # committed with the statement (autocommit)
        turn_announced = announce
    turn, session = cast(Turn, built[0]), cast(AgentSession, built[1])
    session.agent = cast(Agent, built[2])
    turn.session, turn.tenant = session, cast(Tenant, built[3])
    turn.blocked, turn.allowed_endpoint_names = blocked, allowed  # type: ignore[attr-defined]
    turn.started = started  # type: ignore[attr-defined]
    if started:
        # The statement read the row as it was before its own UPDATE.
        turn.status, turn.attempts = TurnStatus.RUNNING, turn.attempts + 1
        turn.started_at, turn.heartbeat_at = turn.started_at or now, now
    turn.catalog = _catalog(endpoints, tools, policies)  # type: ignore[attr-defined]
    turn.announced = turn_announced  # type: ignore[attr-defined]
    return turn


def _event_params(event: SessionEvent) -> dict[str, Any]:
    """The announced event's column values, as its INSERT would send them (`_announce_sql`)."""
    return {
        f"ev_{field.column}": field.get_db_prep_save(field.pre_save(event, add=True), connection)
        for field in _event_fields()
    }


@functools.cache
def _event_fields() -> tuple[Any, ...]:
    meta = SessionEvent._meta
    return tuple(f for f in meta.local_concrete_fields if f is not meta.auto_field)


class TurnCatalog(NamedTuple):
    """What a run reads of its tenant's catalog as it starts: the active model endpoints (for
    its router), the agent's allowed tools (with their servers) and the policies that may
    decide its calls, as `router_for_tenant`, `tools_by_name` and `policies_for_agent` would
    read them."""

    endpoints: list[ModelEndpoint]
    tools: dict[str, Tool]
    policies: list[Policy]


def _catalog(endpoints: list[Any], tools: list[Any], policies: list[Any]) -> TurnCatalog:
    def linked(rows: list[Any], field: str) -> list[Any]:
        out = []
        for (main, related), _ in rows:
            setattr(main, field, related)
            out.append(main)
        return out

    return TurnCatalog(
        endpoints=[cast(ModelEndpoint, models[0]) for models, _ in endpoints],
        tools={tool.name: tool for tool in linked(tools, "server")},
        policies=linked(policies, "current_version"),
    )


@functools.cache
def _catalog_reads() -> list[JoinedRead]:
    """The catalog reads (TurnCatalog), which go with the turn's own in one round trip: the
    tenant, agent and names come from the turn's rows (the ids are the parameters)."""
    turns = Turn._meta.db_table
    tenant = f"(SELECT x.tenant_id FROM {turns} x WHERE x.id = %(turn)s)"  # noqa: S608
    sessions = AgentSession._meta.db_table
    agent = f"(SELECT y.agent_id FROM {sessions} y WHERE y.id = %(session)s)"  # noqa: S608
    agents = Agent._meta.db_table
    disabled = PolicyMode.DISABLED.value
    return [
        JoinedRead(
            [(ModelEndpoint, "m")],
            f"""FROM "{ModelEndpoint._meta.db_table}" m
            WHERE m.tenant_id = {tenant} AND m.is_active ORDER BY m.priority, m.name""",
        ),
        JoinedRead(
            [(Tool, "o"), (McpServer, "v")],
            f"""FROM "{Tool._meta.db_table}" o
            LEFT JOIN "{McpServer._meta.db_table}" v ON v.id = o.server_id
            WHERE o.tenant_id = {tenant} AND o.name IN (
                SELECT jsonb_array_elements_text(z.allowed_tools) FROM {agents} z
                WHERE z.id = {agent} AND jsonb_typeof(z.allowed_tools) = 'array')""",  # noqa: S608
        ),
        JoinedRead(
            [(Policy, "p"), (PolicyVersion, "v")],
            f"""FROM "{Policy._meta.db_table}" p
            JOIN "{PolicyVersion._meta.db_table}" v ON v.id = p.current_version_id
            WHERE p.tenant_id = {tenant} AND p.mode <> '{disabled}'
                AND (p.agent_slug = '' OR p.agent_slug = (
                    SELECT z.slug FROM {agents} z WHERE z.id = {agent}))
            ORDER BY p.name, p.id""",  # noqa: S608 (names from the models; ids are parameters)
        ),
    ]


@functools.cache
def _turn_read(*, announce: bool = False) -> JoinedRead:
    """Every turn run starts with this read: written once, as the ORM would with
    select_related, because compiling it from a QuerySet each time cost ~1 ms of CPU on the
    path from `POST /turns` to the first model call."""
    through = Agent.allowed_endpoints.through
    endpoint = Agent.allowed_endpoints.field.related_model
    turns = Turn._meta.db_table
    unfinished = ", ".join(
        f"'{status.value}'" for status in TurnStatus if status not in TERMINAL_TURN_STATUSES
    )
    earlier_unfinished = f"""EXISTS (SELECT 1 FROM {turns} e WHERE e.session_id = t.session_id
        AND e.seq < t.seq AND e.status IN ({unfinished}))"""  # noqa: S608 (names, not input)
    return JoinedRead(
        [(Turn, "t"), (AgentSession, "s"), (Agent, "a"), (Tenant, "n")],
        f"""
        FROM {turns} t
        JOIN {AgentSession._meta.db_table} s ON s.id = t.session_id
        JOIN {Agent._meta.db_table} a ON a.id = s.agent_id
        JOIN {Tenant._meta.db_table} n ON n.id = t.tenant_id
        WHERE t.id = %(turn)s AND t.session_id = %(session)s
        """,
        extra=f"""
            {earlier_unfinished},
            ARRAY (SELECT m.name FROM {through._meta.db_table} j
                JOIN {endpoint._meta.db_table} m ON m.id = j.modelendpoint_id
                WHERE j.agent_id = s.agent_id ORDER BY m.name),
            EXISTS (SELECT 1 FROM started)
            {", (SELECT a.id FROM announced a)" if announce else ""}
        """,  # noqa: S608 (names from the models; the ids are parameters)
        # Both parts see the row as it was before the UPDATE (one snapshot): the SELECT's
        # columns and `started` agree.
        head=f"""
        WITH started AS (
            UPDATE {turns} t SET status = '{TurnStatus.RUNNING.value}',
                attempts = t.attempts + 1,
                started_at = COALESCE(t.started_at, %(now)s), heartbeat_at = %(now)s
            WHERE t.id = %(turn)s AND t.session_id = %(session)s
                AND t.status IN ('{TurnStatus.QUEUED.value}', '{TurnStatus.RUNNING.value}')
                AND NOT {earlier_unfinished}
            RETURNING t.attempts, t.cancel_requested, t.tenant_id
        )
        {_announce_sql() if announce else ""}
        """,  # noqa: S608
    )


def _announce_sql() -> str:
    """A CTE storing the first run's `turn.started` (its values are the `ev_<column>`
    parameters, `_event_params`) when the statement starts the turn's first run for the
    event's tenant, and the turn is not being cancelled (then the loop emits it, and its
    first check-in unwinds). The audit chain seals it as it commits, as any event."""
    columns = [field.column for field in _event_fields()]
    tenant = SessionEvent._meta.get_field("tenant").column
    return f""",
        announced AS (
            INSERT INTO "{SessionEvent._meta.db_table}" ({", ".join(f'"{c}"' for c in columns)})
            SELECT {", ".join(f"%(ev_{c})s" for c in columns)}
            FROM started s
            WHERE s.attempts = 1 AND NOT s.cancel_requested AND s.tenant_id = %(ev_{tenant})s
            RETURNING id
        )"""  # noqa: S608 (names from the model; the values are parameters)


def _run_locked(turn: Turn, span: Any) -> str:
    # `span`: this run's (turn_execute), around the loop's own (invoke_agent, the parent of
    # the steps).
    if span.is_recording():
        span.set_attributes(
            {
                "warden.tenant.id": str(turn.tenant_id),
                "warden.session.id": str(turn.session_id),
                "warden.turn.id": str(turn.id),
                "warden.turn.attempt": turn.attempts,
            }
        )
    return _run(turn)


def _run(turn: Turn) -> str:
    session: AgentSession = turn.session
    agent = session.agent
    # Every run counts itself (marked running as it was read) before it writes anything.
    first_run = turn.attempts == 1
    # One writer, store and toolbox for the loop and the gate: events wait for the next write
    # that cannot (TurnWrites), and the gate writes its decision nodes into the same action
    # graph (positions come from this one store).
    writes = TurnWrites(session, turn)
    announced: SessionEvent | None = turn.announced  # type: ignore[attr-defined]
    events = DbEventSink(
        writes,
        stored=None if announced is None else _first_run_started(turn.id),
    )
    if announced is not None:
        writes.checked_in()  # its statement set the heartbeat; the turn is not being cancelled
    checkpoints = DbCheckpointStore(turn, writes, first_run=first_run)
    catalog: TurnCatalog = turn.catalog  # type: ignore[attr-defined]
    tools = Toolbox(agent.allowed_tools, turn=turn, writes=writes, catalog=catalog.tools)
    allowed = list(turn.allowed_endpoint_names) or None  # type: ignore[attr-defined]
    # One router for the turn (built from the tenant's endpoints, cached per process).
    router = router_for_tenant(tenant_id=turn.tenant_id, rows=catalog.endpoints)
    if turn.min_context_tokens:
        # Admitted with allow_model_upgrade: only endpoints that take the whole prompt.
        allowed = [
            e.name
            for e in router.endpoints
            if (allowed is None or e.name in allowed)
            and e.context_window >= turn.min_context_tokens
        ]
    user_id = turn.requested_by_id or session.user_id
    caps = budget_ledger.caps_for_turn(
        tenant_id=turn.tenant_id,
        agent_id=agent.id,
        user_id=user_id,
        session_id=session.id,
        turn_id=turn.id,
        builtin=builtin_caps(agent),
    )
    state = TurnBudgetState(
        agent_tier=agent.model_tier,
        currency=budget_ledger.currency_for(tenant_id=turn.tenant_id),
        caps=caps,
        # Admitted under backpressure: small tier and fewer tools from the first call.
        obligations=set(turn.degraded or ()),
    )
    budget = LedgerBudget(
        turn=turn,
        session=session,
        agent=agent,
        router=router,
        allowed=allowed,
        caps=caps,
        windows=budget_ledger.windows_for(tenant_id=turn.tenant_id, user_id=user_id),
        state=state,
        writes=writes,
        # As read under the session lock: only this turn adds to them from here on.
        spent=(turn.input_tokens, turn.input_tokens + turn.output_tokens, session.tokens_used),
        first_run=first_run,
    )
    budget.start()
    config = loop_config_for(agent, json_steps=_json_steps(router, turn, allowed))
    try:
        outcome = run_turn(
            turn_id=str(turn.id),
            user_message=turn.user_message,
            model=RouterModelPort(
                router=router,
                turn=turn,
                tier=agent.model_tier,
                sensitivity=session.data_sensitivity,
                allowed=allowed,
                writes=writes,
                state=state,
            ),
            tools=tools,
            policy=policy_gate_for(
                turn,
                tools=tools,
                checkpoints=checkpoints,
                events=events,
                budget=budget,
                policies=catalog.policies,
            ),
            system_prompt=agent.system_prompt,
            # Earlier turns: the newest summary and the turns after it, summarised again
            # when the prompt nears the model's window or the turn's input budget.
            memory=context_memory(
                turn=turn,
                router=router,
                allowed=allowed,
                tier=agent.model_tier,
                sensitivity=session.data_sensitivity,
            ),
            budget=budget,
            events=events,
            checkpoints=checkpoints,
            # A decision on the call this turn is parked on (None: none parked or undecided).
            approval=approval_decision_for(turn),
            config=config,
            attributes=turn_attributes(turn),
        )
    except TurnCancelled:
        _finish(
            turn,
            writes=writes,
            status=TurnStatus.CANCELLED,
            outcome="cancelled",
            detail="",
            events=[("turn.cancelled", {"turn_id": str(turn.id)})],
        )
        return "cancelled"
    except ToolJobPending as pending:
        # A long-running tool runs as its own job: park the turn, free this worker, and only
        # then start the job (it requeues the turn when done; the loop replays its node).
        _finish(
            turn,
            writes=writes,
            status=TurnStatus.WAITING,
            outcome="waiting_tool",
            detail=f"waiting for tool {pending.tool} (job {pending.job_id})",
            events=[("turn.waiting", pending.event_payload(turn))],
        )
        transaction.on_commit(pending.dispatch)
        return "waiting"
    except Exception as exc:
        logger.exception("turn crashed", extra={"turn_id": str(turn.id)})
        _finish(
            turn,
            writes=writes,
            status=TurnStatus.FAILED,
            outcome="internal_error",
            detail=f"internal error ({type(exc).__name__})",
            events=[("turn.failed", {"turn_id": str(turn.id), "reason": "internal_error"})],
        )
        return "failed"
    finally:
        budget.close()  # the last call's Redis settle (it waits for a next reserve otherwise)
    if outcome.status == "waiting_approval":
        return _park_for_approval(turn, outcome, events.deferred, writes)
    _record_outcome(turn, outcome, events.deferred, writes)
    return outcome.status


def loop_config_for(agent: Agent, *, json_steps: bool) -> LoopConfig:
    """The loop's settings for a turn of `agent` (a replay builds the same)."""
    return LoopConfig(
        max_steps=agent.max_steps,
        max_reprompts=settings.WARDEN_MAX_REPROMPTS,
        max_output_tokens=min(1024, agent.max_output_tokens_per_turn),
        min_output_tokens=min(128, agent.max_output_tokens_per_turn),
        json_steps=json_steps,
        trim_tools_to=settings.WARDEN_BUDGET_TRIM_TOOLS,
        compressed_observation_chars=settings.WARDEN_BUDGET_COMPRESSED_OBSERVATION_CHARS,
        compressed_history_exchanges=settings.WARDEN_BUDGET_KEEP_HISTORY_TURNS,
    )


def turn_attributes(turn: Turn) -> dict[str, Any]:
    """What every port call of the turn is told about where it runs (`StepContext`)."""
    session = turn.session
    return {
        "tenant": str(turn.tenant_id),
        "session": str(session.id),
        "agent": session.agent.slug,
        "environment": session.environment,
        "risk_tier": session.risk_tier,
        "data_sensitivity": session.data_sensitivity,
    }


def _park_for_approval(
    turn: Turn, outcome: TurnOutcome, deferred: list[tuple[str, Any]], writes: TurnWrites
) -> str:
    """The loop parked a call for a human: record the approval request and set the turn
    waiting (outcome "waiting_approval"), both or neither; this worker is then free. The
    decision requeues the turn (apps/agents/approval_flow.py)."""
    pending = outcome.pending
    assert pending is not None, "a waiting_approval outcome carries its pending call"
    if Turn.objects.filter(id=turn.id, cancel_requested=True).exists():
        # Cancelled while it ran: nobody should be asked to approve what nobody waits for.
        _finish(
            turn,
            writes=writes,
            status=TurnStatus.CANCELLED,
            outcome="cancelled",
            detail="",
            events=[("turn.cancelled", {"turn_id": str(turn.id)})],
        )
        return "cancelled"
    node = next((r for r in outcome.steps if r.node_id == pending.call_key), None)
    with transaction.atomic():
        approval = approval_services.approval_request_create(
            tenant_id=turn.tenant_id,
            turn_id=turn.id,
            session_id=turn.session_id,
            call_key=pending.call_key,
            step_index=node.step_index if node else 0,
            tool_name=pending.call.name,
            arguments=pending.call.arguments,
            reasons=[pending.reason] if pending.reason else [],
            requested_by_id=turn.requested_by_id,
            context=_approval_context(turn),
        )
        # The loop's turn.waiting names the call; the timeline gets the approval's id and the
        # redacted arguments instead of the raw ones.
        waiting = {
            "turn_id": str(turn.id),
            "node_id": pending.call_key,
            "call_key": pending.call_key,
            "tool": pending.call.name,
            "arguments": approval.arguments_summary,
            "reason": "approval_required",
            "reasons": approval.reasons,
            "approval_id": str(approval.id),
            "expires_at": approval.expires_at.isoformat(),
        }
        events = [(name, waiting if name == "turn.waiting" else data) for name, data in deferred]
        if not any(name == "turn.waiting" for name, _ in events):
            events.append(("turn.waiting", waiting))
        _finish(
            turn,
            writes=writes,
            status=TurnStatus.WAITING,
            outcome=WAITING_APPROVAL,
            detail=f"waiting for approval of {pending.call.name}: {pending.reason}"[:2000],
            events=events,
        )
        if approval.status != ApprovalStatus.PENDING:
            # Decided already (the turn parked on this call before, and its resume was lost).
            approval_id = approval.id
            transaction.on_commit(lambda: turn_resume_on_decision(approval_id=approval_id))
    return "waiting"


def _approval_context(turn: Turn) -> dict[str, Any]:
    """What the approver sees besides the call: who, where, and what the turn cost so far."""
    session = turn.session
    tokens = Turn.objects.values_list("input_tokens", "output_tokens").get(id=turn.id)
    # What each model call cost, as its settle priced it (on the node's outputs).
    cost = sum(
        (
            Decimal(str(outputs.get("cost") or 0))
            for outputs in ActionNode.objects.filter(turn=turn, kind="model_call").values_list(
                "outputs", flat=True
            )
            if isinstance(outputs, dict)
        ),
        Decimal(0),
    )
    started = turn.started_at or turn.created_at
    user = turn.requested_by or session.user
    return {
        "agent": session.agent.name,
        "agent_slug": session.agent.slug,
        "user": user.get_username() if user else "",
        "environment": session.environment,
        "input_tokens": tokens[0],
        "output_tokens": tokens[1],
        "cost_usd": f"{cost:.4f}",
        "elapsed_ms": round((timezone.now() - started).total_seconds() * 1000),
    }


def policy_gate_for(
    turn: Turn,
    *,
    tools: Toolbox,
    checkpoints: DbCheckpointStore,
    events: DbEventSink,
    budget: BudgetView,
    policies: list[Policy] | None = None,
) -> PolicyGate:
    """The gate every tool call of this turn passes before it runs: the tenant's Rego
    policies (apps.policies), each decision recorded on the turn's action graph.
    `policies`: the agent's, as read when the run started (else read at its first call)."""
    return TenantPolicyGate(
        turn=turn,
        tools=tools,
        checkpoints=checkpoints,
        events=events,
        budget=budget,
        policies=policies,
    )


def _json_steps(router: ModelRouter, turn: Turn, allowed: list[str] | None) -> bool:
    """Native tool calls when the router's first choice has them, else JSON steps.

    Fixed for the whole turn so a failover never changes the step format mid-turn.
    """
    first = router.first_choice(
        tier=turn.session.agent.model_tier,  # type: ignore[arg-type]
        sensitivity=turn.session.data_sensitivity,
        allowed=allowed,
    )
    return first is not None and not first.supports_tools


def _record_outcome(
    turn: Turn, outcome: TurnOutcome, deferred: list[tuple[str, Any]], writes: TurnWrites
) -> None:
    status = _STATUS.get(outcome.status, TurnStatus.FAILED)
    reason = outcome.reason or outcome.status
    detail = outcome.detail
    events = list(deferred)
    if not events:  # the loop always emits one; be safe if it did not
        events = [
            (
                "turn.failed" if status == TurnStatus.FAILED else "turn.completed",
                {"turn_id": str(turn.id), "reason": reason},
            )
        ]
    _finish(
        turn,
        writes=writes,
        status=status,
        outcome="completed" if status == TurnStatus.COMPLETED else reason,
        detail=detail,
        final_answer=outcome.final_answer or "",
        events=events,
    )


def _finish(
    turn: Turn,
    *,
    status: str,
    outcome: str,
    detail: str,
    events: list[tuple[str, Any]],
    final_answer: str = "",
    writes: TurnWrites | None = None,
) -> None:
    # Tokens are not written here: LedgerBudget.settle adds each model call's usage to
    # the turn and the session as it is spent, so a parked or resumed turn is counted once.
    now = timezone.now()
    fields: dict[str, Any] = {
        "status": status,
        "outcome": outcome,
        "detail": detail,
        "final_answer": final_answer,
        "updated_at": now,
    }
    if status in TERMINAL_TURN_STATUSES:
        fields["finished_at"] = now
    writes = writes or TurnWrites(turn.session, turn)
    for event, payload in events:
        writes.event(event, payload)
    # The new status and the announcing events (after any the turn still had queued) commit
    # together, in one round trip; plain UPDATEs (no read-modify-write), so a concurrent
    # cancel request is neither lost nor overwritten.
    writes.send(
        batch.update(Turn.objects.filter(id=turn.id), **fields),
        batch.update(AgentSession.objects.filter(id=turn.session_id), updated_at=now),
    )
    for name, value in fields.items():
        setattr(turn, name, value)
    # This run's counts (its outcome, its steps' latencies, tokens, cost, denials) go to the
    # shared /metrics figures: one Redis round trip per run of a turn, none per step.
    metric_add("turns", (outcome,))
    metrics_flush()


def turns_recover() -> int:
    """Re-dispatch turns whose worker vanished or whose dispatch was lost.

    A running turn is orphaned when nobody holds its session's lock: the lock lives exactly
    as long as the connection of the worker running it, so this sees a killed worker at once,
    with no heartbeat to wait for. A queued turn is lost when it is older than
    WARDEN_TURN_STALE_SECONDS (its message went missing, or sits unacknowledged with a dead
    worker until the broker's visibility timeout). Safe to over-dispatch: turn_execute takes
    the session lock and checks order.
    """
    stale = timezone.now() - timedelta(seconds=settings.WARDEN_TURN_STALE_SECONDS)
    running = list(
        Turn.objects.filter(status=TurnStatus.RUNNING).values_list("id", "session_id", "tenant_id")
    )
    free = _sessions_unlocked(list({session_id for _, session_id, _ in running}))
    orphaned = [row for row in running if row[1] in free]
    lost = Turn.objects.filter(status=TurnStatus.QUEUED, created_at__lt=stale).values_list(
        "id", "session_id", "tenant_id"
    )
    count = 0
    for turn_id, session_id, tenant_id in [*orphaned, *lost]:
        turn_dispatch(turn_id=turn_id, session_id=session_id, tenant_id=tenant_id)
        count += 1
    # Turns parked on an approval that was decided, whose resume message went missing.
    return count + approval_turns_recover()
