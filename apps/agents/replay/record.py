"""The recorded side of a replay: a turn's action graph checked for completeness, and
what a divergence is."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, NoReturn

from apps.agents.adapters import node_record
from apps.agents.jobs import WAITING_OUTCOME as WAITING_TOOL
from apps.agents.models import ActionNode, Turn, TurnStatus
from apps.agents.runtime.compression import SUMMARY_PURPOSE
from apps.agents.runtime.ports import (
    StepContext,
    StepRecord,
)
from apps.core.exceptions import Conflict, InvalidInput

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


def _shown(value: Any) -> Any:
    """A value as a report shows it: as is when short, else its JSON cut to VALUE_LIMIT."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    if len(text) <= VALUE_LIMIT:
        return value
    return text[:VALUE_LIMIT] + f"… [{len(text) - VALUE_LIMIT} more characters]"


class Diverged(BaseException):
    """Unwinds the loop at the first divergence (a BaseException: the loop turns ordinary
    exceptions of its ports into observations and denials)."""

    def __init__(self, divergence: Divergence) -> None:
        super().__init__(divergence.message)
        self.divergence = divergence


class RecordEnds(BaseException):
    """The replay reached the point where a turn that ended abruptly stops being recorded."""


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
        self.records = {n.node_id: node_record(n) for n in nodes}
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
                self.incomplete(
                    f"the node at position {expected} (before {node.node_id}) is missing"
                )
        for node in nodes:
            if not isinstance(node.inputs, dict) or not isinstance(node.outputs, dict):
                self.incomplete(f"node {node.node_id} has damaged inputs or outputs", node.node_id)
            if node.inputs.get("purpose") == SUMMARY_PURPOSE:
                # The turn's context summary: replay starts from the summary it kept (as a
                # resumed run does, apps/agents/compression.replay_memory), not a new call.
                del self.records[node.node_id]
                continue
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
        if self.turn.status != TurnStatus.COMPLETED:
            return
        if not any(
            r.kind == "model_call" and r.status == "completed" and r.outputs["final_answer"]
            for r in self.records.values()
        ):
            self.incomplete("the log ends before the model call that gave the final answer")
        if "turn.completed" not in event_types:
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
        raise Diverged(
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
            raise RecordEnds()
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


def compare_call(
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
