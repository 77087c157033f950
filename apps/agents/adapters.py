"""Django-backed implementations of the loop's ports (apps.agents.runtime.ports)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from django.db import connection, transaction
from django.utils import timezone

from apps.agents import jobs as tool_jobs
from apps.agents.events import event_published, new_event, token_publish
from apps.agents.models import ActionNode, AgentSession, SessionEvent, Turn
from apps.agents.runtime.compression import SUMMARY_PURPOSE
from apps.agents.runtime.ports import (
    GateDecision,
    StepContext,
    StepRecord,
    ToolResult,
)
from apps.core import batch
from apps.core.redaction import StreamRedactor, redactor_for
from apps.core.telemetry import current_trace_id
from apps.llm.models import Sensitivity
from apps.llm.providers.base import Tier
from apps.llm.router import ModelRouter, escalate
from apps.llm.types import (
    ModelRequest,
    ModelResponse,
    NoEndpointAvailable,
    ToolCall,
    ToolSpec,
)
from apps.policies import selectors as policy_selectors
from apps.policies import services as policy_services
from apps.policies.models import Policy
from apps.policies.redaction import redact_input
from apps.tenants.models import Membership
from apps.tools.execution import ResolvedTool, outcome_error_text, resolve_tools, tool_call
from apps.tools.executors.base import ToolOutcome
from apps.tools.models import Tool

logger = logging.getLogger("warden.agents")

# Events the orchestrator writes itself, in the same transaction as the turn's
# new status, so nobody hears "completed" while the row still says "running".
TERMINAL_EVENTS = frozenset({"turn.completed", "turn.failed", "turn.waiting"})


class TurnCancelled(BaseException):
    """Raised inside a port when the turn was cancelled; unwinds the loop.

    A BaseException so the loop's own error handling (which turns tool
    exceptions into observations) does not swallow it.
    """


class TurnWrites:
    """What a running turn writes, in as few round trips as durability allows.

    Events may wait; checkpoints and the check-in before a call may not. So an event is
    queued, and goes out with the next write that cannot wait — a node of the action graph,
    or the check-in before a model or tool call — in the same round trip and transaction
    (apps/core/batch.py), ahead of it. Every event is therefore durable before the checkpoint
    that follows it and before any call the turn makes, and is published (after commit, in
    order) just as soon; the checkpoints are written exactly when they were when every
    statement was a round trip of its own. A turn's 47 statements were 11 event INSERTs,
    11 node writes and 5 check-ins, nearly all back to back.
    """

    def __init__(self, session: AgentSession, turn: Turn) -> None:
        self.session, self.turn = session, turn
        # In order: events (to publish once stored) and other records that may wait, each
        # with what to do once it is committed.
        self._queued: list[SessionEvent | batch.Statement] = []
        self._then: list[tuple[int, Callable[[batch.Result], None]]] = []
        # The last write checked in, and nothing was queued or checked in since (see check_in).
        self._checked_in = False
        self._check_in: batch.Statement | None = None

    def event(self, event_type: str, payload: dict[str, Any]) -> None:
        self._queued.append(
            new_event(session=self.session, turn=self.turn, event=event_type, data=payload)
        )

    def later(
        self, statement: batch.Statement, then: Callable[[batch.Result], None] | None = None
    ) -> None:
        """Queue a write that may wait like an event: a record nothing resumes from. `then`
        runs with its result once it is committed (in the order queued)."""
        self._queued.append(statement)
        if then is not None:
            self._then.append((len(self._queued) - 1, then))

    def send(self, *statements: batch.Statement, check_in: bool = False) -> list[batch.Result]:
        """Write what is queued, then `statements`, in one round trip and one transaction;
        the statements' results. `check_in`: with the check-in last (TurnCancelled if the
        turn was cancelled; what came before it is committed all the same), which then
        stands for the check-in before the turn's next call (see check_in)."""
        # Taken off the queue first: if the write fails, the turn fails, and its failure is
        # recorded without retrying a batch the database refused.
        queued, self._queued = self._queued, []
        after, self._then = self._then, []
        self._checked_in = False
        # All the queued events go in one INSERT of several rows, ahead of the rest (one
        # transaction: the order of its statements changes nothing for what commits). Their
        # ids come back in the order of its rows (as for bulk_create): the order emitted.
        events: list[SessionEvent] = []
        others: list[batch.Statement] = []
        place: dict[int, int] = {}  # a queued record's index → its place among the records
        for index, item in enumerate(queued):
            if isinstance(item, SessionEvent):
                events.append(item)
            else:
                place[index] = len(others)
                others.append(item)
        ahead = 1 if events else 0
        results = batch.execute(
            [
                *([batch.insert_rows(events, returning=True)] if events else []),
                *others,
                *statements,
                *([self._check_in_statement()] if check_in else []),
            ]
        )
        if events:
            rows = results[0].rows
            assert rows and len(rows) == len(events), "each event has its id"
            for event, (event_id, *_) in zip(events, rows, strict=True):
                event.id = event_id
                event_published(event)  # once committed: at once in autocommit
        for index, then in after:
            # After commit: at once in autocommit, at the end of a surrounding transaction.
            transaction.on_commit(functools.partial(then, results[ahead + place[index]]))
        if check_in:
            if not results.pop().rowcount:
                raise TurnCancelled()
            self._checked_in = True
        return results[ahead + len(others) :]

    def checked_in(self) -> None:
        """The statement that started this run set the heartbeat and found the turn not
        being cancelled: it stands for the check-in before the run's first call, if nothing
        is queued by then."""
        self._checked_in = True

    def check_in(self) -> None:
        """Heartbeat and cancellation check before every model and tool call (queued events
        go with it). The heartbeat tells the recovery sweep the turn is alive; a turn whose
        cancellation was requested matches no row, and unwinds.

        A write sent with `check_in=True` (a tool call's result) already did this: when
        nothing was queued and no check-in was made since, the next check-in is that one
        (only the turn's own work, no call, came between), and costs no round trip."""
        if self._checked_in and not self._queued:
            self._checked_in = False
            return
        self.send(check_in=True)
        self._checked_in = False

    def _check_in_statement(self) -> batch.Statement:
        # Compiled once per run: after that only the heartbeat, its first parameter (SET comes
        # before WHERE), changes.
        now = timezone.now()
        heartbeat = _HEARTBEAT.get_db_prep_save(now, connection=connection)
        if self._check_in is not None:
            _, *where = cast(tuple[Any, ...], self._check_in.params)
            return batch.Statement(self._check_in.sql, (heartbeat, *where))
        statement = batch.update(
            Turn.objects.filter(id=self.turn.id, cancel_requested=False), heartbeat_at=now
        )
        if cast(tuple[Any, ...], statement.params)[:1] == (heartbeat,):
            self._check_in = statement
        return statement


_HEARTBEAT = Turn._meta.get_field("heartbeat_at")


# --------------------------------------------------------------------------- checkpoints


def node_record(node: ActionNode) -> StepRecord:
    """A stored action-graph node as the loop reads it (checkpoints, replay)."""
    return StepRecord(
        node_id=node.node_id,
        turn_id=str(node.turn_id),
        kind=node.kind,  # type: ignore[arg-type]
        status=node.status,
        step_index=node.step_index,
        call_index=node.call_index,
        attempt=node.attempt,
        parents=tuple(node.parents),
        inputs=node.inputs,
        outputs=node.outputs,
        scratchpad=node.scratchpad,
        latency_ms=node.latency_ms,
        input_tokens=node.input_tokens,
        output_tokens=node.output_tokens,
        created_at=node.created_at,
    )


class DbCheckpointStore:
    """The action graph in Postgres. Each write is one statement that commits on its own
    (autocommit): a "started" row must survive the worker being killed during the tool call.

    Only the worker holding the session lock writes a turn's nodes, so which nodes exist and
    the next position are known here, and a write is a single UPDATE or INSERT.
    """

    def __init__(self, turn: Turn, writes: TurnWrites, *, first_run: bool = False) -> None:
        """`first_run`: the turn never ran before, so it has no nodes to load."""
        self.turn, self.writes = turn, writes
        self._first_run = first_run
        self._known: set[str] | None = set() if first_run else None
        self._last_position = 0

    def load(self, turn_id: str) -> Sequence[StepRecord]:
        if self._first_run and turn_id == str(self.turn.id):
            return []  # nothing written yet (nothing but a run's store writes its nodes)
        nodes = list(
            ActionNode.objects.filter(tenant_id=self.turn.tenant_id, turn_id=turn_id).order_by(
                "position"
            )
        )
        self._known = {n.node_id for n in nodes}
        self._last_position = max((n.position for n in nodes), default=0)
        return [node_record(n) for n in nodes]

    def _upsert(self, record: StepRecord, *, later: bool = False, check_in: bool = False) -> None:
        if self._known is None:
            self.load(str(self.turn.id))
        assert self._known is not None
        fields = {
            "kind": record.kind,
            "status": record.status,
            "step_index": record.step_index,
            "call_index": record.call_index,
            "attempt": record.attempt,
            "parents": list(record.parents),
            "inputs": record.inputs,
            "outputs": record.outputs,
            "scratchpad": record.scratchpad,
            "latency_ms": record.latency_ms,
            "input_tokens": record.input_tokens,
            "output_tokens": record.output_tokens,
            # The trace of the run writing it: a node parked in one run and finished in the
            # next one carries the trace that finished it.
            "trace_id": current_trace_id(),
        }
        if record.node_id in self._known:
            statement = batch.update(
                ActionNode.objects.filter(turn=self.turn, node_id=record.node_id),
                **fields,
                updated_at=timezone.now(),
            )
            if later:
                self.writes.later(statement)
            else:
                self.writes.send(statement, check_in=check_in)
            return
        node = ActionNode(
            tenant_id=self.turn.tenant_id,
            turn=self.turn,
            node_id=record.node_id,
            position=self._last_position + 1,
            **fields,
        )
        if later:
            self.writes.later(batch.insert(node))
        else:
            self.writes.send(batch.insert(node), check_in=check_in)
        self._known.add(record.node_id)
        self._last_position += 1

    def save(self, record: StepRecord, *, with_next_write: bool = False) -> None:
        # An observation is its tool call's result as the prompt shows it: the loop makes it
        # again from the tool's node when it is missing, so it waits like an event. So does
        # the model call that ends the turn with its answer: the turn's outcome is the next
        # write, and the node (with its ledger row) commits with it. Nothing outside this
        # worker acts on the answer before then, and a crash before it costs what a crash
        # during the call would: the model is asked again, and the open hold is charged.
        # Likewise a model call whose first tool call is decided in-process
        # (`with_next_write`): it commits with that call's first write, before the tool runs.
        self._upsert(
            record,
            later=with_next_write or record.kind == "observation" or _is_final(record),
        )

    def record(self, record: StepRecord) -> None:
        """Add a node nothing resumes from (a policy decision: the gate decides again for a
        call with no checkpoint of its own): it waits, as events do, for the next write that
        cannot. It is never changed afterwards."""
        self._upsert(record, later=True)

    def mark_started(self, record: StepRecord) -> None:
        # Durable before the tool runs, in the same round trip as the check-in that
        # Toolbox.execute makes before anything else (the next write of the turn): nothing
        # happens between the two, so it is no less durable than written alone, one round
        # trip sooner. The check-in commits it even when it finds the turn cancelled, as
        # it did when it was its own write.
        self._upsert(record, later=True)

    def mark_finished(self, record: StepRecord) -> None:
        # With the check-in, which then stands for the one before the turn's next call: the
        # loop queues the call's observation (and emits its result) before this, so nothing
        # but the turn's own work comes between (a budget hold at most), and the call after
        # it makes no round trip of its own to check in.
        self._upsert(record, check_in=True)


def _is_final(record: StepRecord) -> bool:
    return (
        record.kind == "model_call"
        and record.status == "completed"
        and record.outputs.get("final_answer") is not None
    )


# --------------------------------------------------------------------------- events


class DbEventSink:
    """Stores each loop event as a SessionEvent, with the turn's next write that cannot wait
    (TurnWrites), and publishes it after commit."""

    def __init__(self, writes: TurnWrites, *, stored: tuple[str, dict[str, Any]] | None = None):
        """`stored`: an event (type and payload) of this run already stored and published
        (the first run's `turn.started`, written by the statement that started it): the
        loop's emit of it is not written again."""
        self.writes = writes
        self.deferred: list[tuple[str, dict[str, Any]]] = []
        self._stored = stored

    def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        if self._stored is not None and (event_type, payload) == self._stored:
            self._stored = None
            return
        if event_type in TERMINAL_EVENTS:
            self.deferred.append((event_type, payload))
            return
        self.writes.event(event_type, payload)


# --------------------------------------------------------------------------- model


class BudgetTier(Protocol):
    def tier_for(self, attempt: int) -> Tier: ...


class BudgetView(Protocol):
    """What the policy gate reads of the turn's budget (apps/agents/budgeting.py)."""

    def session_used(self) -> int: ...

    def snapshot(self) -> dict[str, Any] | None: ...


class RouterModelPort:
    """The loop's model: the tenant's router, with the agent's tier and the session's
    sensitivity, streaming tokens to the session, escalating after malformed output."""

    def __init__(
        self,
        *,
        router: ModelRouter,
        turn: Turn,
        tier: str,
        sensitivity: str,
        allowed: Sequence[str] | None,
        writes: TurnWrites,
        stream: bool = True,
        state: BudgetTier | None = None,
    ) -> None:
        """`state`: the turn's budget state; under a budget's `small_tier` obligation it
        asks for the small tier (and no escalation)."""
        self.router, self.turn, self.writes = router, turn, writes
        self.tier: Tier = cast(Tier, tier)
        self.sensitivity, self.allowed = sensitivity, allowed
        self.stream = stream
        self.state = state

    def complete(self, request: ModelRequest) -> ModelResponse:
        self.writes.check_in()
        attempt = int(request.metadata.get("attempt", 0))
        # The second re-prompt in a row goes to the larger tier: a small model that
        # failed the schema twice rarely gets it right the third time.
        tier: Tier = escalate(self.tier) if attempt >= 2 else self.tier
        if self.state is not None:
            tier = self.state.tier_for(attempt)
        # A summary of old history (context compression) is the small tier's job, and not
        # streamed: it is no part of the answer.
        summary = request.metadata.get("purpose") == SUMMARY_PURPOSE
        if summary:
            tier = "small"
        streaming = self.stream and not summary
        turn = self.turn
        # Token deltas are the raw scratchpad: redacted as a stream, never a delta at a time.
        redacted = StreamRedactor(redactor_for(turn.tenant_id))

        def on_token(text: str) -> None:
            if out := redacted.feed(text):
                token_publish(session_id=turn.session_id, turn_id=turn.id, text=out)

        try:
            return self.router.complete(
                request,
                tier=tier,
                sensitivity=self.sensitivity,
                on_token=on_token if streaming else None,
                allowed=self.allowed,
            )
        except NoEndpointAvailable:
            if tier == self.tier:
                raise
            # Nothing to escalate to: keep trying the agent's own tier.
            return self.router.complete(
                request,
                tier=self.tier,
                sensitivity=self.sensitivity,
                on_token=on_token if streaming else None,
                allowed=self.allowed,
            )
        finally:
            if out := redacted.flush():
                token_publish(session_id=turn.session_id, turn_id=turn.id, text=out)


# --------------------------------------------------------------------------- tools


class ToolJobPending(BaseException):
    """Raised by the toolbox when a long-running tool was handed to a job of its own.

    A BaseException for the same reason as TurnCancelled. The orchestrator parks the turn
    (waiting, outcome "waiting_tool") and only then calls `dispatch()`, so the job can never
    finish and requeue a turn that is not parked yet (apps/agents/jobs.py has the whole flow).
    """

    def __init__(self, *, job_id: Any, tool: str, node_id: str) -> None:
        super().__init__(f"tool {tool!r} runs as job {job_id}")
        self.job_id, self.tool, self.node_id = job_id, tool, node_id

    def dispatch(self) -> None:
        tool_jobs.tool_job_dispatch(job_id=self.job_id)

    def event_payload(self, turn: Turn) -> dict[str, Any]:
        return {
            "turn_id": str(turn.id),
            "node_id": self.node_id,
            "tool": self.tool,
            "job_id": str(self.job_id),
            "reason": "tool_running",
        }


def outcome_to_result(outcome: ToolOutcome) -> ToolResult:
    """The executor's outcome as the loop's observation: the full content on success (the
    loop stores it on the node and caps what the model sees), else the stable error code and
    the reason, so the model can react."""
    if outcome.ok:
        return ToolResult(ok=True, output=outcome.content)
    return ToolResult(ok=False, error=outcome_error_text(outcome))


class Toolbox:
    """The tools an agent may call: its allowed names resolved against the tenant's catalog
    (a builtin the catalog does not list still resolves from the registry; a disabled row
    always wins), run through this process's GuardedExecutor with a credential minted for
    each call. Long-running tools go to a job of their own (ToolJobPending). Every call
    first checks whether the turn was cancelled.
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        turn: Turn,
        writes: TurnWrites | None = None,
        catalog: Mapping[str, Tool] | None = None,
    ) -> None:
        """`catalog`: the tenant's rows for `names` (`tools_by_name`), when already read."""
        self.names = list(names)
        self.turn = turn
        self._writes = writes
        self._catalog = catalog
        self._tools: dict[str, ResolvedTool] | None = None

    @property
    def writes(self) -> TurnWrites:
        if self._writes is None:  # a toolbox only asked for its specs needs none
            self._writes = TurnWrites(self.turn.session, self.turn)
        return self._writes

    @property
    def tools(self) -> dict[str, ResolvedTool]:
        if self._tools is None:  # resolved once per turn, on first use
            self._tools = resolve_tools(
                tenant_id=self.turn.tenant_id, names=self.names, rows=self._catalog
            )
        return self._tools

    def list_specs(self) -> Sequence[ToolSpec]:
        return [
            ToolSpec(
                name=t.definition.name,
                description=t.definition.description,
                input_schema=dict(t.definition.input_schema),
            )
            for t in self.tools.values()
        ]

    def is_idempotent(self, name: str) -> bool:
        tool = self.tools.get(name)
        return bool(tool and tool.definition.idempotent)

    def execute(self, call: ToolCall, *, ctx: StepContext) -> ToolResult:
        self.writes.check_in()
        tool = self.tools.get(call.name)
        turn = self.turn
        if tool is None:
            return ToolResult(
                ok=False, error=f"tool_unavailable: tool {call.name!r} is not available"
            )
        if tool.long_running:
            job = tool_jobs.tool_job_create(
                turn=turn, node_id=ctx.idempotency_key, tool=tool, arguments=call.arguments
            )
            raise ToolJobPending(job_id=job.id, tool=call.name, node_id=ctx.idempotency_key)
        outcome = tool_call(
            tool,
            call.arguments,
            tenant_id=str(turn.tenant_id),
            session_id=str(turn.session_id),
            turn_id=str(turn.id),
            idempotency_key=ctx.idempotency_key,
        )
        logger.info(
            "tool ran",
            extra={
                "tool": call.name,
                "ok": outcome.ok,
                "error_code": outcome.error_code,
                "attempts": outcome.attempts,
                "ms": round(outcome.latency_ms, 1),
            },
        )
        return outcome_to_result(outcome)


def record_to_dict(record: StepRecord) -> dict[str, Any]:
    data = asdict(record)
    data["created_at"] = record.created_at.isoformat() if record.created_at else None
    return data


# --------------------------------------------------------------------------- policy gate


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TenantPolicyGate:
    """The loop's PolicyGate over the tenant's Rego policies (apps.policies).

    For each tool call it builds the input document (README "Policies": tenant, user,
    environment, agent, session, tool, arguments, budget, time), has every applicable policy
    evaluated, and records the decision as its own node of the action graph,
    `<call node id>:policy` (kind `policy`: versions, modes, the input with argument values
    redacted, each result, the latency), with a `policy.decision` event. Report-only policies
    never change what happens; what they would have decided is on the node and the event.

    Anything failing here is a deny (the loop also denies when `check` raises): fail closed.
    """

    def __init__(
        self,
        *,
        turn: Turn,
        tools: Toolbox,
        checkpoints: DbCheckpointStore,
        events: DbEventSink,
        budget: BudgetView,
        policies: list[Policy] | None = None,
    ) -> None:
        """`policies`: the agent's (`policies_for_agent`), when read with the run's start."""
        self.turn, self.tools, self.checkpoints, self.events = turn, tools, checkpoints, events
        self.budget = budget
        self._user: dict[str, Any] | None = None
        # The agent's policies, read once per run (as it starts, or at its first decision):
        # every call of one run of the turn is decided under the same policies (a new
        # version applies from the next turn, or the next run of this one).
        self._policies = policies

    def decides_in_process(self, call: ToolCall) -> bool:
        """Every applicable policy is evaluated in this thread (the shipped default), and the
        input document needs no database read (the policies and the requester's roles are
        already loaded, or there is no requester)."""
        if self._policies is None:
            return False
        if self._user is None and (self.turn.requested_by_id or self.turn.session.user_id):
            return False
        try:
            return policy_services.decision_in_process(
                tool_name=call.name, agent_policies=self._policies
            )
        except Exception:  # unsure: the record is written first, as for any other gate
            logger.exception("could not tell where the policy decides")
            return False

    def check(self, call: ToolCall, *, ctx: StepContext) -> GateDecision:
        started = time.perf_counter()
        node_id = f"{ctx.idempotency_key}:policy"
        try:
            input_doc = self.input_for(call)
            if self._policies is None:
                self._policies = policy_selectors.policies_for_agent(
                    tenant_id=self.turn.tenant_id, agent_slug=self.turn.session.agent.slug
                )
            decision = policy_services.decision_make(
                tenant_id=self.turn.tenant_id,
                agent_slug=self.turn.session.agent.slug,
                tool_name=call.name,
                input_doc=input_doc,
                agent_policies=self._policies,
            )
        except Exception as exc:
            logger.exception("policy decision failed", extra={"turn_id": str(self.turn.id)})
            reason = f"the policy decision failed ({type(exc).__name__}): denied (fail closed)"
            self._record(node_id, ctx, call, outcome="deny", reasons=[reason], started=started)
            return GateDecision.deny(reason)
        self._record(
            node_id,
            ctx,
            call,
            outcome=decision.outcome,
            reasons=list(decision.enforced.reasons),
            started=started,
            input_doc=redact_input(input_doc),
            obligations=list(decision.enforced.obligations),
            would_be=decision.would_be.as_dict(),
            policies=list(decision.evaluations),
        )
        if decision.outcome == "deny":
            return GateDecision.deny(decision.reason)
        if decision.outcome == "require_approval":
            return GateDecision.require_approval(decision.reason)
        return GateDecision.allow()

    # ------------------------------------------------------------------ the input document

    def input_for(self, call: ToolCall) -> dict[str, Any]:
        turn = self.turn
        session = turn.session
        agent = session.agent
        tool = self.tools.tools.get(call.name)
        if tool is not None:
            row = tool.row
            tool_doc = {
                "name": call.name,
                "source": str(tool.definition.source),
                "risk_tier": row.risk_tier if row else tool.definition.risk_tier,
                "sensitivity": row.data_sensitivity if row else Sensitivity.INTERNAL.value,
            }
        else:  # not in the agent's toolbox: nothing vouches for it
            tool_doc = {
                "name": call.name,
                "source": "unknown",
                "risk_tier": "unknown",
                "sensitivity": "unknown",
            }
        # What the session has spent now, as the turn's budget knows it (each settle returns
        # the new total): a budget spent by an earlier call of this very turn counts.
        used = self.budget.session_used()
        limit = agent.max_tokens_per_session
        budget_doc = self.budget.snapshot() or {
            "tokens_used": used,
            "tokens_limit": limit,
            "fraction_used": round(used / limit, 6) if limit > 0 else 1.0,
        }
        return {
            "tenant": {"id": str(turn.tenant_id), "slug": self._tenant_slug()},
            "user": self._user_doc(),
            "environment": session.environment,
            "agent": {"id": str(agent.id), "slug": agent.slug, "tier": agent.model_tier},
            "session": {
                "id": str(session.id),
                "risk_tier": session.risk_tier,
                "data_sensitivity": session.data_sensitivity,
            },
            "tool": tool_doc,
            "arguments": call.arguments,
            "budget": budget_doc,
            "time": _rfc3339(timezone.now()),
        }

    def _tenant_slug(self) -> str:
        # Read with the turn (select_related) by the orchestrator; else once, then cached.
        return str(self.turn.tenant.slug)

    def _user_doc(self) -> dict[str, Any]:
        # Whoever asked for this turn, else the session's owner; an API key's turn has none.
        if self._user is None:
            user_id = self.turn.requested_by_id or self.turn.session.user_id
            roles: list[str] = []
            if user_id is not None:
                roles = sorted(
                    Membership.objects.filter(
                        tenant_id=self.turn.tenant_id, user_id=user_id
                    ).values_list("role", flat=True)
                )
            self._user = {"id": user_id, "roles": roles}
        return self._user

    # ------------------------------------------------------------------ the record

    def _record(
        self,
        node_id: str,
        ctx: StepContext,
        call: ToolCall,
        *,
        outcome: str,
        reasons: list[str],
        started: float,
        input_doc: dict[str, Any] | None = None,
        obligations: list[Any] | None = None,
        would_be: dict[str, Any] | None = None,
        policies: list[dict[str, Any]] | None = None,
    ) -> None:
        elapsed_us = round((time.perf_counter() - started) * 1_000_000)
        would_be = would_be or {"outcome": outcome, "reasons": reasons, "obligations": []}
        policies = policies or []
        outputs = {
            "outcome": outcome,
            "reasons": reasons,
            "obligations": obligations or [],
            "would_be": would_be,
            "report_only_differs": would_be["outcome"] != outcome,
            "policies": policies,
            "latency_us": elapsed_us,
        }
        self.checkpoints.record(
            StepRecord(
                node_id=node_id,
                turn_id=str(self.turn.id),
                kind="policy",
                status=outcome,
                step_index=ctx.step_index,
                call_index=ctx.call_index,
                inputs={"tool": call.name, "call_id": call.id, "input": input_doc or {}},
                outputs=outputs,
                latency_ms=elapsed_us // 1000,
                created_at=timezone.now(),
            )
        )
        self.events.emit(
            "policy.decision",
            {
                "turn_id": str(self.turn.id),
                "node_id": node_id,
                "call_node_id": ctx.idempotency_key,
                "tool": call.name,
                "outcome": outcome,
                "reasons": reasons,
                "would_be": would_be["outcome"],
                "would_be_reasons": would_be["reasons"],
                "policies": [
                    {
                        "name": p["name"],
                        "version": p["version"],
                        "mode": p["mode"],
                        "outcome": p["outcome"],
                    }
                    for p in policies
                ],
                "latency_us": elapsed_us,
            },
        )
