"""Session events: typed payloads, stored in order and published after commit.

Durable events get a `SessionEvent` row whose id is the SSE event id, then go to
the session's channel-layer group once the transaction commits. Model tokens are
ephemeral: published at once, never stored (the final answer carries the text).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from apps.agents.models import AgentSession, SessionEvent, Turn
from apps.core.events import publish_now, publish_on_commit
from apps.core.redaction import redact_payload
from apps.core.telemetry import current_trace_id
from apps.tenants.authz import Permission, allows
from apps.tenants.identity import Identity

EventType = Literal[
    "turn.accepted",
    "turn.started",
    "turn.waiting",
    "turn.completed",
    "turn.failed",
    "turn.cancelled",
    "step.rationale",
    "step.malformed",
    "model.called",
    "model.token",
    "tool.call",
    "tool.result",
    "tool.progress",
    "policy.denied",
    "approval.decided",
    "policy.decision",
    "error",
]


class StreamMessage(TypedDict):
    """What a consumer receives from the channel layer (and forwards to clients)."""

    type: Literal["session.event"]
    id: int | None
    event: str
    turn: str | None
    data: dict[str, Any]


# The model's private reasoning, which `GET /turns/<id>/steps` keeps in the scratchpad for
# identities with `reasoning.read`. `model.token` deltas are the raw model output as it is
# generated — the scratchpad's `text`/`raw_text`, thought included, before anyone knows
# whether the reply is a tool call or the final answer — so they are private as a whole.
# Others follow along through `step.rationale` and get the answer in `turn.completed`.
PRIVATE_EVENTS = frozenset({"model.token"})
PRIVATE_FIELDS = frozenset({"thought", "scratchpad", "raw_text"})


def event_visible(identity: Identity, message: dict[str, Any]) -> dict[str, Any] | None:
    """What `identity` may see of a wire event (live or replayed), or None for nothing.

    The same rule on the websocket and SSE, for live events and for backlog replay.
    """
    if allows(identity, Permission.REASONING_READ):
        return message
    if message.get("event") in PRIVATE_EVENTS:
        return None
    data = message.get("data")
    if isinstance(data, dict) and not PRIVATE_FIELDS.isdisjoint(data):
        message = {**message, "data": {k: v for k, v in data.items() if k not in PRIVATE_FIELDS}}
    return message


# Event ids are BigAutoField values: a resume point beyond this can't be stored or compared.
MAX_EVENT_ID = 2**63 - 1


def parse_event_id(raw: str) -> int | None:
    """A resume point (`Last-Event-ID`, `?last_event_id=`): an event id, 0 for the start;
    None when `raw` is none (not a decimal integer from 0 to MAX_EVENT_ID)."""
    text = raw.strip()
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= MAX_EVENT_ID else None


def session_group(session_id: object) -> str:
    return f"session.{session_id}"


def to_wire(message: StreamMessage) -> dict[str, Any]:
    return {
        "id": message["id"],
        "event": message["event"],
        "turn": message["turn"],
        "data": message["data"],
    }


def new_event(
    *, session: AgentSession, event: str, data: dict[str, Any], turn: Turn | None = None
) -> SessionEvent:
    """An unsaved durable event: every writer (POST /turns, the loop's batched writes, tool
    jobs, approvals) builds its rows here, so what each stored event carries is decided once.

    It carries the trace id of the span it is made in (a queued event: the span it was
    queued in, not the one that writes it). The payload is redacted with the tenant's settings
    (PII, credentials, custom patterns) before it is stored or published: nothing unredacted
    reaches the log or its subscribers."""
    return SessionEvent(
        tenant_id=session.tenant_id,
        session=session,
        turn=turn,
        type=event,
        payload=redact_payload(data, session.tenant_id),
        trace_id=current_trace_id(),
    )


def event_record(
    *, session: AgentSession, event: str, data: dict[str, Any], turn: Turn | None = None
) -> SessionEvent:
    """Store a durable event and publish it when the surrounding transaction commits."""
    row = new_event(session=session, event=event, data=data, turn=turn)
    row.save(force_insert=True)
    event_published(row)
    return row


def event_published(row: SessionEvent) -> None:
    """Publish a stored event to its session's subscribers once its transaction commits."""
    message: StreamMessage = {
        "type": "session.event",
        "id": row.id,
        "event": row.type,
        "turn": str(row.turn_id) if row.turn_id else None,
        "data": row.payload,
    }
    publish_on_commit(session_group(row.session_id), dict(message))


def token_publish(*, session_id: object, turn_id: object, text: str) -> None:
    """Stream one model token delta, now; nothing is stored."""
    message: StreamMessage = {
        "type": "session.event",
        "id": None,
        "event": "model.token",
        "turn": str(turn_id),
        "data": {"text": text},
    }
    publish_now(session_group(session_id), dict(message))


def row_to_wire(row: SessionEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "event": row.type,
        "turn": str(row.turn_id) if row.turn_id else None,
        "data": row.payload,
    }
