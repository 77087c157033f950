"""Replay: run a recorded session's turns through the loop again, from its log, with no live
call, and say whether it reproduces and where it first diverges.

The loop (apps/agents/runtime) runs over ports; a replay plugs in ports that serve the record:

- the model answers each call with the output recorded for its node id (`<turn>:<step>:
  model:<attempt>`): the same text and tool calls, a malformed reply as malformed, a failed
  call as the same failure — no endpoint is contacted;
- the toolbox returns each call's recorded result — no tool runs; its specs (what the step
  parser validates against) are the agent's tools as the catalog has them now;
- the budget grants each call the obligations recorded on its node (so a compressed prompt
  is compressed again the same way) and refuses where the recorded turn was refused;
- the policy gate evaluates for real. With `policies="recorded"` (the default: reproduction)
  it evaluates the policy *versions* each decision recorded, in their recorded modes, on the
  input document recorded with it (the call's arguments put back); with `"current"` it asks
  the agent's policies as they are now, on the same inputs — what today's policies would
  have made of the same session;
- checkpoints go to memory, and every node the loop writes is compared with the recorded
  node of the same id as it is written, so the first difference is found where it happens.

Nothing is written: the replay reads inside a READ ONLY transaction that is rolled back, so
even a bug that tried to write would fail instead of touching the session. Its events stay
in memory.

Damaged or incomplete recorded data (a missing node or turn, a node without the fields its
kind needs, a completed turn without its `turn.completed` event, a deleted policy version)
raises `ReplayIncomplete` (409 `replay_incomplete`) naming the turn and node.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NoReturn

from django.db import connection, transaction

from apps.agents.adapters import Toolbox
from apps.agents.approval_flow import WAITING_OUTCOME as WAITING_APPROVAL
from apps.agents.jobs import WAITING_OUTCOME as WAITING_TOOL
from apps.agents.models import ActionNode, AgentSession, SessionEvent, Turn, TurnStatus
from apps.agents.orchestrator import history_for, loop_config_for, turn_attributes
from apps.agents.runtime.loop import TurnOutcome, run_turn
from apps.agents.runtime.memory import InMemoryCheckpointStore, ListEventSink
from apps.agents.runtime.ports import (
    ApprovalDecision,
    BudgetExceeded,
    GateDecision,
    Reservation,
    Settlement,
    StepContext,
    StepRecord,
    ToolResult,
)
from apps.core.exceptions import Conflict, InvalidInput
from apps.llm.types import (
    EndpointNotReady,
    EndpointUnpriced,
    MalformedOutput,
    ModelRequest,
    ModelResponse,
    ProviderError,
    ToolCall,
    ToolSpec,
    Usage,
)
from apps.policies import selectors as policy_selectors
from apps.policies import services as policy_services
from apps.policies.engines.decision import Decision, combine
from apps.policies.models import PolicyMode, PolicyVersion

PolicySource = Literal["recorded", "current"]
POLICY_SOURCES: tuple[PolicySource, ...] = ("recorded", "current")

# Turns that ended where their record ends, not at a decision of the loop: cancelled, crashed,
# parked on a long-running tool, stopped on an interrupted non-idempotent call. Their replay
# reproduces when it reaches that point.
ABRUPT_ENDS = frozenset(
    {"cancelled", "internal_error", WAITING_TOOL, "non_idempotent_tool_interrupted"}
)
BUDGET_CODES = frozenset({"budget_exceeded", "rate_limited", "budget_unavailable"})
REPLAYED_STATUSES = frozenset(
    {TurnStatus.COMPLETED, TurnStatus.FAILED, TurnStatus.CANCELLED, TurnStatus.WAITING}
)
VALUE_LIMIT = 2000  # characters of a recorded or replayed value shown in a divergence


class ReplayIncomplete(Conflict):
    """The session's recorded data is incomplete or damaged: it cannot be replayed."""

    code = "replay_incomplete"


class ReplayTooLarge(InvalidInput):
    """Too much to replay within a request; `manage.py replay` has no cap."""

    code = "replay_too_large"


@dataclass(frozen=True)
class Divergence:
    """The first place where the replay and the record disagree."""

    turn_id: str
    turn_seq: int
    step_index: int | None
    call_index: int | None
    node_id: str
    kind: str  # model_call, tool_call, policy, observation, turn
    code: str
    field: str
    recorded: Any
    replayed: Any
    message: str

    def as_dict(self) -> dict[str, Any]:
        shown = {"recorded": _shown(self.recorded), "replayed": _shown(self.replayed)}
        return {**asdict(self), **shown}


@dataclass
class TurnReplay:
    turn_id: str
    seq: int
    recorded_status: str
    recorded_outcome: str
    replayed_outcome: str = ""
    nodes_compared: int = 0
    reproduces: bool = True
    note: str = ""


@dataclass
class ReplayReport:
    session_id: str
    policies: PolicySource
    reproduces: bool = True
    turns: list[TurnReplay] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    divergence: Divergence | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "session": self.session_id,
            "policies": self.policies,
            "reproduces": self.reproduces,
            "turns": [asdict(t) for t in self.turns],
            "skipped": self.skipped,
            "divergence": self.divergence.as_dict() if self.divergence else None,
        }


def _shown(value: Any) -> Any:
    """A value as a report shows it: as is when short, else its JSON cut to VALUE_LIMIT."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    if len(text) <= VALUE_LIMIT:
        return value
    return text[:VALUE_LIMIT] + f"… [{len(text) - VALUE_LIMIT} more characters]"


class _Diverged(BaseException):
    """Unwinds the loop at the first divergence (a BaseException: the loop turns ordinary
    exceptions of its ports into observations and denials)."""

    def __init__(self, divergence: Divergence) -> None:
        super().__init__(divergence.message)
        self.divergence = divergence


class _RecordEnds(BaseException):
    """The replay reached the point where a turn that ended abruptly stops being recorded."""


# --------------------------------------------------------------------------- the record


def _to_record(node: ActionNode) -> StepRecord:
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


# The fields each kind of node must have (by status) for the loop to be replayed over it.
_REQUIRED_OUTPUTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("model_call", "completed"): ("rationale", "tool_calls", "final_answer", "native"),
    ("model_call", "malformed"): ("error",),
    ("model_call", "failed"): ("error",),
    ("tool_call", "completed"): ("ok", "output", "observation"),
    ("tool_call", "error"): ("ok", "observation"),
    ("tool_call", "denied"): ("observation",),
    ("tool_call", "rejected"): ("observation",),
    ("observation", "completed"): ("content",),
}
_KNOWN_STATUSES: dict[str, frozenset[str]] = {
    "model_call": frozenset({"completed", "malformed", "failed"}),
    "tool_call": frozenset(
        {"waiting_approval", "started", "completed", "error", "denied", "rejected"}
    ),
    "observation": frozenset({"completed"}),
    "policy": frozenset({"allow", "deny", "require_approval"}),
}


class Recording:
    """One turn's recorded action graph, checked for completeness before anything runs."""

    def __init__(self, turn: Turn, nodes: Sequence[ActionNode], event_types: set[str]) -> None:
        self.turn = turn
        self.records = {n.node_id: _to_record(n) for n in nodes}
        self.positions = {n.node_id: n.position for n in nodes}
        self.reached: set[str] = set()
        self._check(nodes, event_types)

    def incomplete(self, problem: str, node_id: str = "") -> NoReturn:
        raise ReplayIncomplete(
            f"Turn {self.turn.seq} cannot be replayed: {problem}.",
            details={
                "turn": str(self.turn.id),
                "turn_seq": self.turn.seq,
                "node_id": node_id,
                "problem": problem,
            },
        )

    def _check(self, nodes: Sequence[ActionNode], event_types: set[str]) -> None:
        for expected, node in enumerate(nodes, start=1):
            if node.position != expected:
                self.incomplete(f"the node at position {expected} is missing", node.node_id)
        for node in nodes:
            if not isinstance(node.inputs, dict) or not isinstance(node.outputs, dict):
                self.incomplete(f"node {node.node_id} has damaged inputs or outputs", node.node_id)
            if node.status not in _KNOWN_STATUSES.get(node.kind, frozenset()):
                self.incomplete(
                    f"node {node.node_id} has an unknown kind or status ({node.kind}, "
                    f"{node.status})",
                    node.node_id,
                )
            missing = [
                key
                for key in _REQUIRED_OUTPUTS.get((node.kind, node.status), ())
                if key not in node.outputs
            ]
            if missing:
                self.incomplete(
                    f"node {node.node_id} lacks {', '.join(missing)} in its outputs", node.node_id
                )
            for parent in node.parents:
                if parent and parent not in self.records:
                    self.incomplete(
                        f"node {node.node_id} depends on node {parent}, which is missing", parent
                    )
            if node.kind == "tool_call":
                if not {"tool", "arguments"} <= set(node.inputs):
                    self.incomplete(f"node {node.node_id} lacks the call it made", node.node_id)
                if f"{node.node_id}:policy" not in self.records:
                    self.incomplete(
                        f"the policy decision on {node.node_id} is missing",
                        f"{node.node_id}:policy",
                    )
            if node.kind == "policy" and "outcome" not in node.outputs:
                self.incomplete(f"node {node.node_id} lacks its outcome", node.node_id)
        if self.turn.status == TurnStatus.COMPLETED and "turn.completed" not in event_types:
            self.incomplete("the log ends before the turn's turn.completed event")

    def get(self, node_id: str) -> StepRecord | None:
        return self.records.get(node_id)

    def json_steps(self) -> bool:
        """Whether the turn ran with JSON steps (a model without native tool calls)."""
        return any(
            r.kind == "model_call" and r.status == "completed" and not r.outputs["native"]
            for r in self.records.values()
        )

    def unreached(self) -> list[StepRecord]:
        return sorted(
            (r for r in self.records.values() if r.node_id not in self.reached),
            key=lambda r: self.positions[r.node_id],
        )

    def diverge(
        self,
        *,
        node_id: str,
        kind: str,
        code: str,
        field: str,
        recorded: Any,
        replayed: Any,
        message: str,
        step_index: int | None = None,
        call_index: int | None = None,
    ) -> NoReturn:
        record = self.records.get(node_id)
        raise _Diverged(
            Divergence(
                turn_id=str(self.turn.id),
                turn_seq=self.turn.seq,
                step_index=step_index if step_index is not None else _step(record),
                call_index=call_index if call_index is not None else _call(record),
                node_id=node_id,
                kind=kind,
                code=code,
                field=field,
                recorded=recorded,
                replayed=replayed,
                message=message,
            )
        )

    def missing(self, node_id: str, kind: str, ctx: StepContext, what: str) -> NoReturn:
        """The replay needs a recorded output that is not there: where an abruptly ended turn
        stops, that is its end; anywhere else the replay went where the record never did."""
        if self.turn.outcome in ABRUPT_ENDS and all(
            r.node_id in self.reached or r.kind == "policy" or r.node_id == node_id
            for r in self.records.values()
        ):
            raise _RecordEnds()
        self.diverge(
            node_id=node_id,
            kind=kind,
            code="no_recorded_output",
            field="",
            recorded=None,
            replayed=what,
            message=f"the replay makes {what} ({node_id}) that the log has no recorded output for",
            step_index=ctx.step_index,
            call_index=ctx.call_index,
        )


def _step(record: StepRecord | None) -> int | None:
    return record.step_index if record else None


def _call(record: StepRecord | None) -> int | None:
    return record.call_index if record else None


# --------------------------------------------------------------------------- the ports


class ReplayModel:
    """Answers each model call with the output recorded for its node."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording

    def complete(self, request: ModelRequest) -> ModelResponse:
        node_id = str(request.metadata.get("node_id", ""))
        record = self.recording.get(node_id)
        if record is None or record.kind != "model_call":
            ctx = StepContext(
                turn_id=str(self.recording.turn.id),
                step_index=int(node_id.split(":")[1]) if node_id.count(":") >= 3 else 0,
                call_index=None,
                idempotency_key=node_id,
            )
            self.recording.missing(node_id, "model_call", ctx, "a model call")
        outputs, pad = record.outputs, record.scratchpad
        usage = Usage(
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            estimated=bool(outputs.get("usage_estimated", False)),
        )
        text, raw = str(pad.get("text", "")), str(pad.get("raw_text", ""))
        endpoint, model = str(outputs.get("endpoint", "")), str(outputs.get("model", ""))
        if record.status == "failed":
            error = str(outputs["error"])
            if self.recording.turn.outcome == "endpoint_not_ready":
                raise EndpointNotReady(error)
            if self.recording.turn.outcome == "endpoint_unpriced":
                raise EndpointUnpriced(error)
            raise ProviderError(error)
        if record.status == "malformed":
            # Replayed with the verdict it had: a provider's own rejection (arguments that
            # were not JSON) cannot be rebuilt from what was kept of the reply.
            calls = tuple(ToolCall(**c) for c in outputs.get("attempted_calls") or [])
            response = ModelResponse(
                text=text, tool_calls=calls, usage=usage, endpoint=endpoint, raw_text=raw
            )
            raise MalformedOutput(str(outputs["error"]), response=response)
        calls = ()
        if outputs["native"] and outputs["tool_calls"]:
            calls = tuple(ToolCall(**c) for c in outputs["tool_calls"])
        return ModelResponse(
            text=text, tool_calls=calls, usage=usage, model=model, endpoint=endpoint, raw_text=raw
        )


class ReplayBudget:
    """Grants each model call the obligations recorded on its node; refuses where the
    recorded turn was refused (no model call was recorded there)."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording

    def reserve(
        self, *, estimated_tokens: int, ctx: StepContext, request: ModelRequest | None = None
    ) -> Reservation:
        record = self.recording.get(ctx.idempotency_key)
        turn = self.recording.turn
        if record is None and turn.outcome in BUDGET_CODES:
            raise BudgetExceeded(turn.detail or turn.outcome, code=turn.outcome)
        obligations = frozenset(record.inputs.get("obligations") or ()) if record else frozenset()
        return Reservation(id=ctx.idempotency_key, tokens=estimated_tokens, obligations=obligations)

    def settle(
        self, reservation: Reservation, *, usage: Usage, endpoint: str = ""
    ) -> Settlement | None:
        return None


class ReplayTools:
    """Returns each tool call's recorded result; validates against the agent's tools now."""

    def __init__(self, recording: Recording, toolbox: Toolbox) -> None:
        self.recording, self.toolbox = recording, toolbox

    def list_specs(self) -> Sequence[ToolSpec]:
        return self.toolbox.list_specs()

    def is_idempotent(self, name: str) -> bool:
        return self.toolbox.is_idempotent(name)

    def execute(self, call: ToolCall, *, ctx: StepContext) -> ToolResult:
        record = self.recording.get(ctx.idempotency_key)
        if record is None or record.status not in ("completed", "error"):
            what = f"a call of tool {call.name!r}"
            if record is not None and record.status != "started":
                self.recording.diverge(
                    node_id=ctx.idempotency_key,
                    kind="tool_call",
                    code="tool_status_differs",
                    field="status",
                    recorded=record.status,
                    replayed="executed",
                    message=f"the replay runs {what} that the record shows as {record.status}",
                )
            self.recording.missing(ctx.idempotency_key, "tool_call", ctx, what)
        outputs = record.outputs
        return ToolResult(
            ok=bool(outputs["ok"]), output=_as_shown(outputs), error=outputs.get("error")
        )


_TRUNCATED = re.compile(r"… \[truncated, (\d+) more characters\]$")


def _as_shown(outputs: Mapping[str, Any]) -> Any:
    """The recorded output in the key order the model saw it.

    Postgres' JSONB keeps no key order, so an object output comes back reordered, and the
    observation rebuilt from it would read differently from the one recorded. The recorded
    observation is the output as the model saw it: parsed, it gives the object in its own
    order. An observation cut at the model's limit cannot be parsed; its visible part and
    the count of what was cut stand in for the output (only the visible part is ever shown).
    """
    output, shown = outputs.get("output"), outputs.get("observation")
    if not outputs.get("ok") or isinstance(output, str) or not isinstance(shown, str):
        return output
    try:
        parsed = json.loads(shown)
    except ValueError:
        cut = _TRUNCATED.search(shown)
        if cut is None:
            return output
        return shown[: cut.start()] + " " * int(cut.group(1))
    return parsed if parsed == output else output


class ReplayGate:
    """The policy gate, evaluated for real on the recorded inputs (module docstring)."""

    def __init__(self, recording: Recording, policies: PolicySource) -> None:
        self.recording, self.policies = recording, policies
        self._current: list[Any] | None = None

    def check(self, call: ToolCall, *, ctx: StepContext) -> GateDecision:
        key = ctx.idempotency_key
        recording = self.recording
        recorded_call = recording.get(key)
        if recorded_call is None or recorded_call.kind != "tool_call":
            recording.missing(key, "tool_call", ctx, f"a call of tool {call.name!r}")
        _compare_call(recording, recorded_call, call.name, call.arguments)
        decision_node = recording.get(f"{key}:policy")
        assert decision_node is not None  # Recording._check saw to it
        recording.reached.add(decision_node.node_id)
        recorded_outcome = str(decision_node.outputs["outcome"])
        recorded_reasons = [str(r) for r in decision_node.outputs.get("reasons", [])]
        recorded_input = decision_node.inputs.get("input") or {}
        if not recorded_input:
            # The engine failed when the call was made (a fail-closed deny recorded without an
            # input): there is nothing to evaluate again; the recorded verdict stands.
            outcome, reason = recorded_outcome, "; ".join(recorded_reasons)
        else:
            input_doc = {k: v for k, v in recorded_input.items() if k != "arguments_digest"}
            input_doc["arguments"] = call.arguments
            decision = self._decide(call.name, input_doc, decision_node)
            outcome, reason = decision.outcome, decision.reason
            if outcome != recorded_outcome:
                recording.diverge(
                    node_id=decision_node.node_id,
                    kind="policy",
                    code="policy_decision_differs",
                    field="outcome",
                    recorded={"outcome": recorded_outcome, "reasons": recorded_reasons},
                    replayed={"outcome": outcome, "reasons": list(decision.enforced.reasons)},
                    message=f"the policy decision on the call of {call.name!r} is {outcome} "
                    f"now, {recorded_outcome} in the record",
                )
        if outcome == "deny":
            return GateDecision.deny(reason)
        if outcome == "require_approval":
            return GateDecision.require_approval(reason)
        return GateDecision.allow()

    def _decide(self, tool: str, input_doc: dict[str, Any], node: StepRecord) -> Decision:
        turn = self.recording.turn
        if self.policies == "current":
            if self._current is None:
                self._current = policy_selectors.policies_for_agent(
                    tenant_id=turn.tenant_id, agent_slug=turn.session.agent.slug
                )
            return policy_services.decision_make(
                tenant_id=turn.tenant_id,
                agent_slug=turn.session.agent.slug,
                tool_name=tool,
                input_doc=input_doc,
                agent_policies=self._current,
            )
        evaluations = node.outputs.get("policies") or []
        ids = [str(e.get("version_id", "")) for e in evaluations]
        versions = {
            str(v.id): v for v in PolicyVersion.objects.filter(tenant_id=turn.tenant_id, id__in=ids)
        }
        enforced, every = [], []
        for evaluation, version_id in zip(evaluations, ids, strict=True):
            version = versions.get(version_id)
            if version is None:
                self.recording.incomplete(
                    f"policy {evaluation.get('name')!r} v{evaluation.get('version')}, which "
                    f"decided {node.node_id}, no longer exists",
                    node.node_id,
                )
            label = f"policy {evaluation.get('name')!r} v{version.number}"
            run = policy_services.version_run(version=version, input_doc=input_doc, label=label)
            every.append(run.result)
            if evaluation.get("mode") == PolicyMode.ENFORCE:
                enforced.append(run.result)
        return Decision(enforced=combine(enforced), would_be=combine(every))


def _compare_call(
    recording: Recording, recorded: StepRecord, tool: str, arguments: Mapping[str, Any]
) -> None:
    if recorded.inputs.get("tool") != tool:
        recording.diverge(
            node_id=recorded.node_id,
            kind="tool_call",
            code="tool_differs",
            field="tool",
            recorded=recorded.inputs.get("tool"),
            replayed=tool,
            message=f"the replay calls {tool!r} where the record called "
            f"{recorded.inputs.get('tool')!r}",
        )
    if recorded.inputs.get("arguments") != arguments:
        recording.diverge(
            node_id=recorded.node_id,
            kind="tool_call",
            code="tool_arguments_differ",
            field="arguments",
            recorded=recorded.inputs.get("arguments"),
            replayed=dict(arguments),
            message=f"the call of {tool!r} has different arguments",
        )


# The model-call inputs compared, in the order a difference is best explained.
_MODEL_INPUTS = (
    "message_count",
    "max_output_tokens",
    "obligations",
    "request_digest",
    "estimated_tokens",
)


class ComparingStore(InMemoryCheckpointStore):
    """Checkpoints in memory; every node the loop writes is compared with the record."""

    def __init__(self, recording: Recording) -> None:
        super().__init__()
        self.recording = recording
        self.compared = 0

    def save(self, record: StepRecord) -> None:
        self._compare(record)
        super().save(record)

    def mark_started(self, record: StepRecord) -> None:
        self._compare(record)
        super().mark_started(record)

    def mark_finished(self, record: StepRecord) -> None:
        self._compare(record)
        super().mark_finished(record)

    def _differ(
        self, record: StepRecord, code: str, name: str, old: Any, new: Any, msg: str
    ) -> NoReturn:
        self.recording.diverge(
            node_id=record.node_id,
            kind=record.kind,
            code=code,
            field=name,
            recorded=old,
            replayed=new,
            message=msg,
            step_index=record.step_index,
            call_index=record.call_index,
        )

    def _compare(self, record: StepRecord) -> None:
        recorded = self.recording.get(record.node_id)
        self.compared += 1
        if recorded is None or recorded.kind != record.kind:
            self._differ(
                record,
                "unrecorded_node",
                "kind",
                recorded.kind if recorded else None,
                record.kind,
                f"the replay writes a {record.kind} node ({record.node_id}) the log does not have",
            )
        self.recording.reached.add(record.node_id)
        if record.kind == "model_call":
            self._compare_model(record, recorded)
        elif record.kind == "tool_call":
            self._compare_tool(record, recorded)
        elif record.kind == "observation":
            old, new = recorded.outputs.get("content"), record.outputs.get("content")
            if old != new:
                self._differ(
                    record,
                    "observation_differs",
                    "content",
                    old,
                    new,
                    "the model is shown a different observation",
                )

    def _compare_model(self, record: StepRecord, recorded: StepRecord) -> None:
        for name in _MODEL_INPUTS:
            if name in recorded.inputs and recorded.inputs[name] != record.inputs.get(name):
                self._differ(
                    record,
                    "model_input_differs",
                    f"inputs.{name}",
                    recorded.inputs[name],
                    record.inputs.get(name),
                    f"the model would be asked something else than in the record ({name} differs)",
                )
        if record.status != recorded.status:
            detail = record.outputs.get("error", "")
            self._differ(
                record,
                "model_step_differs",
                "status",
                recorded.status,
                record.status,
                f"the recorded reply is {record.status} now, {recorded.status} in the record"
                + (f": {detail}" if detail else ""),
            )
        if record.status == "completed":
            for name in ("tool_calls", "final_answer"):
                if recorded.outputs.get(name) != record.outputs.get(name):
                    self._differ(
                        record,
                        "model_step_differs",
                        f"outputs.{name}",
                        recorded.outputs.get(name),
                        record.outputs.get(name),
                        f"the recorded reply reads as a different step now ({name} differs)",
                    )

    def _compare_tool(self, record: StepRecord, recorded: StepRecord) -> None:
        _compare_call(
            self.recording, recorded, str(record.inputs["tool"]), record.inputs["arguments"]
        )
        if record.status in ("started", "approved"):
            return  # on its way; its end is compared when it is written
        if record.status == "waiting_approval":
            if recorded.status != "waiting_approval" and "approval" not in recorded.inputs:
                self._differ(
                    record,
                    "tool_status_differs",
                    "status",
                    recorded.status,
                    record.status,
                    "the replay parks the call for approval; the record never did",
                )
            return
        if record.status != recorded.status:
            self._differ(
                record,
                "tool_status_differs",
                "status",
                recorded.status,
                record.status,
                f"the call ends {record.status} now, {recorded.status} in the record",
            )
        old, new = recorded.outputs.get("observation"), record.outputs.get("observation")
        if old != new:
            self._differ(
                record,
                "observation_differs",
                "outputs.observation",
                old,
                new,
                "the call's result reads differently to the model",
            )


# --------------------------------------------------------------------------- the replay


_OUTCOME_STATUS = {
    "completed": TurnStatus.COMPLETED,
    "waiting_approval": TurnStatus.WAITING,
}


def _replayed_outcome(outcome: TurnOutcome) -> tuple[str, str]:
    """(turn status, turn outcome) as the orchestrator would have stored them."""
    status = _OUTCOME_STATUS.get(outcome.status, TurnStatus.FAILED)
    if status == TurnStatus.COMPLETED:
        return status, "completed"
    if status == TurnStatus.WAITING:
        return status, WAITING_APPROVAL
    return status, outcome.reason or outcome.status


@contextlib.contextmanager
def _read_only() -> Iterator[None]:
    """A transaction (or savepoint) in which Postgres refuses every write; rolled back."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION READ ONLY")
        try:
            yield
        finally:
            transaction.set_rollback(True)


def session_replay(
    *,
    session: AgentSession,
    policies: PolicySource = "recorded",
    max_nodes: int | None = None,
    max_turns: int | None = None,
) -> ReplayReport:
    """Replay every finished (or waiting) turn of `session`, in order, up to the first
    divergence. `max_nodes` / `max_turns` refuse a larger session (ReplayTooLarge)."""
    if policies not in POLICY_SOURCES:
        raise InvalidInput(
            f"policies must be one of {', '.join(POLICY_SOURCES)}.", code="invalid_policies"
        )
    with _read_only():
        return _replay(session, policies, max_nodes, max_turns)


def _replay(
    session: AgentSession, policies: PolicySource, max_nodes: int | None, max_turns: int | None
) -> ReplayReport:
    report = ReplayReport(session_id=str(session.id), policies=policies)
    turns = list(
        Turn.objects.filter(tenant_id=session.tenant_id, session=session)
        .select_related("session__agent", "tenant")
        .order_by("seq")
    )
    if max_turns is not None and len(turns) > max_turns:
        raise ReplayTooLarge(
            f"The session has {len(turns)} turns; at most {max_turns} are replayed in a "
            "request. Use `manage.py replay`.",
            details={"turns": len(turns), "max_turns": max_turns},
        )
    nodes_by_turn: dict[Any, list[ActionNode]] = {}
    nodes = ActionNode.objects.filter(tenant_id=session.tenant_id, turn__session=session)
    if max_nodes is not None:
        count = nodes.count()
        if count > max_nodes:
            raise ReplayTooLarge(
                f"The session has {count} recorded nodes; at most {max_nodes} are replayed "
                "in a request. Use `manage.py replay`.",
                details={"nodes": count, "max_nodes": max_nodes},
            )
    for node in nodes.order_by("turn_id", "position"):
        nodes_by_turn.setdefault(node.turn_id, []).append(node)
    events: dict[Any, set[str]] = {}
    for turn_id, event_type in SessionEvent.objects.filter(
        tenant_id=session.tenant_id, session=session, turn__isnull=False
    ).values_list("turn_id", "type"):
        events.setdefault(turn_id, set()).add(event_type)
    for expected, turn in enumerate(turns, start=1):
        if turn.seq != expected:
            raise ReplayIncomplete(
                f"Turn {expected} of the session is missing from the log.",
                details={"turn_seq": expected, "problem": "missing turn"},
            )
    recordings = [
        Recording(turn, nodes_by_turn.get(turn.id, []), events.get(turn.id, set()))
        for turn in turns
        if turn.status in REPLAYED_STATUSES
    ]
    for turn in turns:
        if turn.status not in REPLAYED_STATUSES:
            report.skipped.append(
                {
                    "turn": str(turn.id),
                    "seq": turn.seq,
                    "status": turn.status,
                    "reason": "not finished: nothing final to compare with",
                }
            )
    for recording in recordings:
        result, divergence = _replay_turn(recording, policies)
        report.turns.append(result)
        if divergence is not None:
            report.reproduces, report.divergence = False, divergence
            break
    return report


def _replay_turn(
    recording: Recording, policies: PolicySource
) -> tuple[TurnReplay, Divergence | None]:
    turn = recording.turn
    agent = turn.session.agent
    result = TurnReplay(
        turn_id=str(turn.id),
        seq=turn.seq,
        recorded_status=turn.status,
        recorded_outcome=turn.outcome,
    )
    store = ComparingStore(recording)
    tools = ReplayTools(recording, Toolbox(agent.allowed_tools, turn=turn))
    approval: ApprovalDecision | None = None
    try:
        for _ in range(len(recording.records) + 2):
            outcome = run_turn(
                turn_id=str(turn.id),
                user_message=turn.user_message,
                model=ReplayModel(recording),
                tools=tools,
                system_prompt=agent.system_prompt,
                history=history_for(turn) if turn.seq > 1 else [],
                policy=ReplayGate(recording, policies),
                budget=ReplayBudget(recording),
                events=ListEventSink(),
                checkpoints=store,
                approval=approval,
                config=loop_config_for(agent, json_steps=recording.json_steps()),
                attributes=turn_attributes(turn),
            )
            pending = outcome.pending
            if outcome.status != "waiting_approval" or pending is None:
                break
            parked = recording.get(pending.call_key)
            decided = parked.inputs.get("approval") if parked else None
            again = approval is not None and approval.call_key == pending.call_key
            if not isinstance(decided, dict) or again:
                break  # the record waits here too
            # Resumed with the decision the record holds, as the approval flow did.
            approval = ApprovalDecision(
                call_key=pending.call_key,
                approved=bool(decided.get("approved")),
                approver=str(decided.get("approver", "")),
                rationale=str(decided.get("rationale", "")),
            )
        status, reason = _replayed_outcome(outcome)
        final_answer = outcome.final_answer or ""
    except _Diverged as diverged:
        result.nodes_compared = store.compared
        return _diverged(result, diverged.divergence)
    except _RecordEnds:
        status, reason, final_answer = turn.status, turn.outcome, turn.final_answer
        result.note = "replayed up to where the recorded turn stopped"
    result.nodes_compared = store.compared
    result.replayed_outcome = reason
    checks = [
        ("turn_outcome_differs", "outcome", (turn.status, turn.outcome), (status, reason)),
        ("final_answer_differs", "final_answer", turn.final_answer, final_answer),
    ]
    for code, name, old, new in checks:
        if old != new:
            return _diverged(
                result,
                Divergence(
                    turn_id=str(turn.id),
                    turn_seq=turn.seq,
                    step_index=None,
                    call_index=None,
                    node_id="",
                    kind="turn",
                    code=code,
                    field=name,
                    recorded=list(old) if isinstance(old, tuple) else old,
                    replayed=list(new) if isinstance(new, tuple) else new,
                    message=f"the turn ends differently ({name})",
                ),
            )
    if not result.note:
        left = recording.unreached()
        if left:
            first = left[0]
            return _diverged(
                result,
                Divergence(
                    turn_id=str(turn.id),
                    turn_seq=turn.seq,
                    step_index=first.step_index,
                    call_index=first.call_index,
                    node_id=first.node_id,
                    kind=first.kind,
                    code="recorded_node_not_replayed",
                    field="",
                    recorded=first.status,
                    replayed=None,
                    message=f"the record has a {first.kind} node the replay never reached",
                ),
            )
    return result, None


def _diverged(result: TurnReplay, divergence: Divergence) -> tuple[TurnReplay, Divergence]:
    result.reproduces = False
    result.note = divergence.message
    return result, divergence
