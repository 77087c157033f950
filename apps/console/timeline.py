"""A session read like a trace viewer: every turn and every action-graph node as a span on
one time axis (a waterfall), with its status, policy decision, tokens, cost, latency and
trace id. What the viewer may read follows their role in the session's tenant, by the same
rule as the websocket and SSE (apps.agents.events.event_visible): the model's private
scratchpad and thoughts only for holders of reasoning.read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Sum
from django.utils import timezone

from apps.agents.events import PRIVATE_FIELDS, event_visible
from apps.agents.models import ActionNode, AgentSession, SessionEvent, Turn
from apps.budgets.models import UsageRecord
from apps.tenants.authz import Permission, allows
from apps.tenants.identity import Identity


@dataclass
class Span:
    kind: str
    name: str
    status: str
    start: datetime
    end: datetime
    depth: int
    trace_id: str = ""
    latency_ms: int = 0
    tokens: str = ""
    cost: Decimal | None = None
    detail: list[tuple[str, str]] = field(default_factory=list)
    offset_pct: float = 0.0
    width_pct: float = 0.0

    @property
    def duration_ms(self) -> int:
        return max(int((self.end - self.start).total_seconds() * 1000), 0)


@dataclass
class Timeline:
    session: AgentSession
    spans: list[Span]
    events: list[dict[str, Any]]
    start: datetime
    end: datetime
    reasoning: bool
    cost: Decimal

    @property
    def total_ms(self) -> int:
        return int((self.end - self.start).total_seconds() * 1000)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)[:4000]


def _node_window(node: ActionNode) -> tuple[datetime, datetime]:
    # A node is first written when its work starts (tool calls) or when it ends (model
    # calls, policy decisions); its last write is when it ended. The span is whichever is
    # longer: the writes apart, or its measured latency back from the end.
    end = max(node.updated_at, node.created_at)
    start = min(node.created_at, end - timedelta(milliseconds=node.latency_ms))
    return start, end


def _node_detail(node: ActionNode, *, reasoning: bool) -> list[tuple[str, str]]:
    detail = [("node", node.node_id)]
    if node.parents:
        detail.append(("parents", ", ".join(node.parents)))
    if node.inputs:
        detail.append(("inputs", _pretty(node.inputs)))
    outputs = node.outputs or {}
    if not reasoning:
        outputs = {k: v for k, v in outputs.items() if k not in PRIVATE_FIELDS}
    if outputs:
        detail.append(("outputs", _pretty(outputs)))
    if reasoning and node.scratchpad:
        detail.append(("scratchpad (private)", _pretty(node.scratchpad)))
    return detail


def session_timeline(*, session: AgentSession, identity: Identity) -> Timeline:
    reasoning = allows(identity, Permission.REASONING_READ)
    turns = list(Turn.objects.filter(session=session).order_by("seq"))
    nodes = list(ActionNode.objects.filter(turn__session=session).order_by("turn__seq", "position"))
    costs = {
        (str(r["turn_id"]), r["node_id"]): r["c"] or Decimal(0)
        for r in UsageRecord.objects.filter(tenant_id=session.tenant_id, session_id=session.id)
        .values("turn_id", "node_id")
        .annotate(c=Sum("cost"))
    }
    now = timezone.now()
    spans: list[Span] = []
    for turn in turns:
        turn_nodes = [n for n in nodes if n.turn_id == turn.id]
        start = turn.started_at or turn.created_at
        end = turn.finished_at or (now if turn.status in ("running", "waiting") else start)
        turn_cost = sum((c for (t, _), c in costs.items() if t == str(turn.id)), start=Decimal(0))
        spans.append(
            Span(
                kind="turn",
                name=f"turn {turn.seq}: {turn.user_message[:80]}",
                status=turn.outcome or turn.status,
                start=turn.created_at,
                end=max(end, turn.created_at),
                depth=0,
                trace_id=next((n.trace_id for n in turn_nodes if n.trace_id), ""),
                tokens=f"{turn.input_tokens} in / {turn.output_tokens} out",
                cost=turn_cost,
                detail=[("message", turn.user_message), ("answer", turn.final_answer)]
                + ([("detail", turn.detail)] if turn.detail else []),
            )
        )
        for node in turn_nodes:
            n_start, n_end = _node_window(node)
            name = node.kind
            if node.kind in ("tool_call", "policy") and isinstance(node.inputs, dict):
                name = f"{node.kind} {node.inputs.get('tool') or node.inputs.get('name') or ''}"
            spans.append(
                Span(
                    kind=node.kind,
                    name=name.strip(),
                    status=node.status,
                    start=n_start,
                    end=n_end,
                    depth=1,
                    trace_id=node.trace_id,
                    latency_ms=node.latency_ms,
                    tokens=(
                        f"{node.input_tokens} in / {node.output_tokens} out"
                        if node.input_tokens or node.output_tokens
                        else ""
                    ),
                    cost=costs.get((str(turn.id), node.node_id)),
                    detail=_node_detail(node, reasoning=reasoning),
                )
            )
    t0 = min((s.start for s in spans), default=session.created_at)
    t1 = max((s.end for s in spans), default=t0)
    total = max((t1 - t0).total_seconds(), 0.001)
    for span in spans:
        span.offset_pct = round((span.start - t0).total_seconds() / total * 100, 2)
        # At least a sliver, so an instant step is still a visible mark.
        width = (span.end - span.start).total_seconds() / total * 100
        span.width_pct = round(min(max(width, 0.4), 100 - span.offset_pct), 2)

    events = []
    for event in SessionEvent.objects.filter(session=session).order_by("id"):
        shown = event_visible(
            identity,
            {"id": event.id, "event": event.type, "turn": event.turn_id, "data": event.payload},
        )
        if shown is not None:
            shown["at"] = event.created_at
            shown["trace_id"] = event.trace_id
            shown["pretty"] = _pretty(shown["data"])
            events.append(shown)
    return Timeline(
        session=session,
        spans=spans,
        events=events,
        start=t0,
        end=t1,
        reasoning=reasoning,
        cost=sum(costs.values(), start=Decimal(0)),
    )
