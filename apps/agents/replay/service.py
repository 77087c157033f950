"""A session replayed turn by turn, and its report (the package docstring says how)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import connection, transaction

from apps.agents.adapters import Toolbox
from apps.agents.approval_flow import WAITING_OUTCOME as WAITING_APPROVAL
from apps.agents.compression import replay_memory
from apps.agents.models import ActionNode, AgentSession, SessionEvent, Turn, TurnStatus
from apps.agents.orchestrator import loop_config_for, turn_attributes
from apps.agents.replay.ports import (
    ComparingStore,
    ReplayBudget,
    ReplayGate,
    ReplayModel,
    ReplayTools,
)
from apps.agents.replay.record import (
    POLICY_SOURCES,
    REPLAYED_STATUSES,
    Diverged,
    Divergence,
    PolicySource,
    RecordEnds,
    Recording,
    ReplayIncomplete,
    ReplayTooLarge,
)
from apps.agents.runtime.loop import TurnOutcome, run_turn
from apps.agents.runtime.memory import ListEventSink
from apps.agents.runtime.ports import ApprovalDecision
from apps.core.exceptions import InvalidInput


@dataclass
class TurnReplay:
    """How one turn's replay went."""

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
    """A session's replay: whether it reproduces, per turn, and the first divergence."""

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
                memory=replay_memory(turn),
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
    except Diverged as diverged:
        result.nodes_compared = store.compared
        return _diverged(result, diverged.divergence)
    except RecordEnds:
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
