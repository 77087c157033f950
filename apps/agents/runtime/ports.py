"""The ports the ReAct loop runs over, and the records it leaves behind.

Framework-free on purpose: the loop only ever talks to these Protocols, so the
Celery task can plug Django-backed implementations in, while tests, replays and
benchmarks plug in the in-memory ones from `memory.py`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from apps.llm.types import ModelRequest, ModelResponse, ToolCall, ToolSpec, Usage

# --- context handed to every port call ----------------------------------------------------------


@dataclass(frozen=True)
class StepContext:
    """Where in the turn a port call happens.

    `idempotency_key` is deterministic (turn id + step index + call index), so a
    resumed turn presents the same key again: a tool executor can pass it on to an
    external API, a budget can deduplicate a reservation.
    `attributes` is whatever the integrator passed to `run_turn` (tenant, session,
    user role, environment, data sensitivity...), e.g. the policy engine's input.
    """

    turn_id: str
    step_index: int
    call_index: int | None
    idempotency_key: str
    attributes: Mapping[str, Any] = field(default_factory=dict)


# --- model --------------------------------------------------------------------------------------


class ModelPort(Protocol):
    """A model (usually the router in front of several endpoints).

    Raises `apps.llm.types.ProviderError` when no answer could be had; the loop
    turns that into a failed turn with reason `provider_error`.
    """

    def complete(self, request: ModelRequest) -> ModelResponse: ...


# --- tools --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolResult:
    """The outcome of one tool execution. `output` must be JSON-serialisable."""

    ok: bool
    output: Any = None
    error: str | None = None


class ToolPort(Protocol):
    """The tools one agent may use in this turn."""

    def list_specs(self) -> Sequence[ToolSpec]: ...

    def execute(self, call: ToolCall, *, ctx: StepContext) -> ToolResult:
        """Run the tool. Failures should come back as `ToolResult(ok=False)`;
        an exception is also turned into an error observation by the loop."""
        ...

    def is_idempotent(self, name: str) -> bool:
        """True if running the tool twice with the same arguments is harmless.
        Decides whether a call interrupted by a crash may be re-run."""
        ...


# --- policy -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateDecision:
    kind: Literal["allow", "deny", "require_approval"]
    reason: str = ""

    @classmethod
    def allow(cls) -> GateDecision:
        return cls("allow")

    @classmethod
    def deny(cls, reason: str) -> GateDecision:
        return cls("deny", reason)

    @classmethod
    def require_approval(cls, reason: str) -> GateDecision:
        return cls("require_approval", reason)


class PolicyGate(Protocol):
    """Decides, before execution, whether a tool call may run.

    If `check` raises, the loop denies the call (fail closed)."""

    def check(self, call: ToolCall, *, ctx: StepContext) -> GateDecision: ...

    def decides_in_process(self, call: ToolCall) -> bool:
        """Whether `check(call)` runs in this process and thread with no I/O (no helper
        process, server or database): then nothing between the model's answer and the call's
        first write can stall, and the model call's record may go with that write
        (CheckpointStore.save's `with_next_write`). False when unsure."""
        ...


class AllowAll:
    """The default gate: no policy engine configured."""

    def check(self, call: ToolCall, *, ctx: StepContext) -> GateDecision:
        return GateDecision.allow()

    def decides_in_process(self, call: ToolCall) -> bool:
        return True


@dataclass(frozen=True)
class ApprovalDecision:
    """A human's decision on a parked call, identified by its idempotency key."""

    call_key: str
    approved: bool
    approver: str
    rationale: str = ""


# --- budget -------------------------------------------------------------------------------------


class BudgetExceeded(Exception):
    """Raised by `BudgetPort.reserve` to refuse a model call.

    `code`: `budget_exceeded` (a cap has no room for the call), `rate_limited` (a rate window
    stayed full) or `budget_unavailable` (the reservation store is unreachable). `scope`: the
    figures of the cap (or window) that refused, for `turn.failed`.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "budget_exceeded",
        scope: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.scope: dict[str, Any] | None = dict(scope) if scope is not None else None


@dataclass(frozen=True)
class Reservation:
    """A hold on the most a call may cost. `obligations` (switched on at 80 % of a cap) ask
    the loop for a smaller request: `compress_context`, `trim_tools` (`small_tier` is the
    model port's business)."""

    id: str
    tokens: int
    cost: str = ""
    obligations: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Settlement:
    """What a settled call cost (a decimal string; "" when unpriced) and whether it used more
    than its hold."""

    cost: str = ""
    overrun: bool = False
    estimated: bool = False


class BudgetPort(Protocol):
    """Budgets: reserve before each model call, settle after it.

    `settle` is always called once per successful `reserve`, with the real usage
    (zero usage when the call failed), so reservations never leak from a live run.

    A resumed run replays checkpointed model calls without reserving or settling them
    again, so a budget must remember what was settled in earlier runs of the turn (keep it
    durable, or reuse the same object): otherwise a resumed turn starts with a fresh budget.
    """

    def reserve(
        self, *, estimated_tokens: int, ctx: StepContext, request: ModelRequest | None = None
    ) -> Reservation:
        """Hold `estimated_tokens`, or raise `BudgetExceeded` with a human reason."""
        ...

    def settle(
        self, reservation: Reservation, *, usage: Usage, endpoint: str = ""
    ) -> Settlement | None: ...


class Unlimited:
    """The default budget: never refuses."""

    def reserve(
        self, *, estimated_tokens: int, ctx: StepContext, request: ModelRequest | None = None
    ) -> Reservation:
        return Reservation(id=ctx.idempotency_key, tokens=estimated_tokens)

    def settle(
        self, reservation: Reservation, *, usage: Usage, endpoint: str = ""
    ) -> Settlement | None:
        return None


# --- events and time ----------------------------------------------------------------------------


class EventSink(Protocol):
    def emit(self, event_type: str, payload: dict[str, Any]) -> None: ...


class NullEventSink:
    def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        return None


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


# --- the action graph and its checkpoints -------------------------------------------------------

NodeKind = Literal["model_call", "tool_call", "observation", "policy"]

# Statuses a node can have, by kind:
#   model_call:  completed | malformed | failed
#   tool_call:   waiting_approval | started | completed | error | denied | rejected
#   observation: completed
#   policy:      allow | deny | require_approval  (a gate's decision, written by the gate)
TOOL_FINISHED = frozenset({"completed", "error", "denied", "rejected"})


@dataclass(frozen=True)
class StepRecord:
    """One node of the turn's action graph, and the unit of checkpointing.

    `node_id` doubles as the idempotency key: `<turn>:<step>:<call>` for a tool
    call, `<turn>:<step>:model:<attempt>` for a model call and
    `<turn>:<step>:<call>:obs` for an observation. Saving a record with an
    existing node id replaces it.

    `outputs` is what end users may see (short rationale, tool calls, results);
    `scratchpad` is private (the model's full thought and raw text) — for
    admins and for replay, never for the transcript.
    """

    node_id: str
    turn_id: str
    kind: NodeKind
    status: str
    step_index: int
    call_index: int | None = None
    attempt: int = 0
    parents: tuple[str, ...] = ()
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    scratchpad: dict[str, Any] = field(default_factory=dict)
    latency_ms: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    created_at: datetime | None = None


class CheckpointStore(Protocol):
    """Durable storage of a turn's action graph; what crash-safe resume reads.

    Every method must be durable when it returns (committed, not inside a
    transaction that wraps the tool call): `mark_started` is the only evidence a
    non-idempotent tool may already have run. Four exceptions, for a store that shares a
    writer with the tool port: `mark_started` may be written with the tool port's first
    write, as long as that comes before the tool runs (apps/agents/adapters.py's check-in);
    an observation record (rebuilt from its tool call's record when it is missing) may
    wait for the turn's next write; and so may the model call's record that ends the turn
    with a final answer, whose next write is the turn's outcome (a crash before it asks the
    model again, as a crash during the call would), and a record saved `with_next_write`.
    """

    def load(self, turn_id: str) -> Sequence[StepRecord]:
        """Every record saved for the turn, in the order first saved."""
        ...

    def save(self, record: StepRecord, *, with_next_write: bool = False) -> None:
        """Insert or replace (by node_id) a model-call, observation or parked record.

        `with_next_write`: the loop's next step is local work and then a write (a model call
        whose first tool call is decided in-process, `PolicyGate.decides_in_process`); the
        record may wait for that write. A crash in between asks the model again, as a crash
        while this record was being written would."""
        ...

    def mark_started(self, record: StepRecord) -> None:
        """Persist a tool-call record with status "started", before the tool runs."""
        ...

    def mark_finished(self, record: StepRecord) -> None:
        """Replace the "started" record with its finished state, after the tool ran. The
        loop saves the call's observation just before, so both can go in one write."""
        ...


# --- conversation memory: earlier turns and their summaries ------------------------------------


@dataclass(frozen=True)
class Exchange:
    """An earlier turn of the session as a prompt shows it: the user's message, the answer."""

    seq: int
    turn_id: str
    user: str
    answer: str


@dataclass(frozen=True)
class ContextSummary:
    """A summary standing in for the session's turns `from_seq`..`through_seq` in every later
    prompt. `tokens_before` is what those turns (and the summary they folded in) took in the
    prompt, `tokens_after` what the summary takes, by the same counter. `made_by` is the
    turn that made it."""

    from_seq: int
    through_seq: int
    text: str
    tokens_before: int
    tokens_after: int
    made_by: str = ""
    counter: str = ""
    turn_ids: tuple[str, ...] = ()


class SummaryStore(Protocol):
    """Where summaries are kept, so later turns reuse them instead of summarising again."""

    def save(self, summary: ContextSummary) -> None: ...
