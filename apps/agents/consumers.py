"""`/ws/sessions/<id>/`: chat with an agent and watch every step.

Client → server: {"type": "message", "content": "..."}, {"type": "cancel", "turn": "<id>"},
{"type": "ping"}. Server → client: every session event as
{"id", "event", "turn", "data"} (model tokens have no id). `?last_event_id=N`
replays what was missed. Several clients may watch one session; their messages
queue as turns in arrival order.

Messages are authorized like the REST API (`turn.start`, `turn.cancel`; refused with
an `error` event, code `permission_denied`), events are filtered like `/steps`
(`events.event_visible`), and the socket ends with its principal (PrincipalConsumer).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from apps.agents import selectors, services
from apps.agents.events import (
    event_visible,
    parse_event_id,
    row_to_wire,
    session_group,
    to_wire,
)
from apps.agents.models import AgentSession, Turn
from apps.core.consumers import CLOSE_NOT_FOUND
from apps.core.exceptions import WardenError
from apps.tenants.authz import Permission, authorize
from apps.tenants.consumers import PrincipalConsumer
from apps.tenants.identity import Identity

__all__ = ["CLOSE_NOT_FOUND", "SessionConsumer"]


class SessionConsumer(PrincipalConsumer):
    stream_permission = Permission.SESSION_READ
    session: AgentSession | None = None

    def envelope(self, event: str, data: dict[str, Any], turn: str | None = None) -> dict[str, Any]:
        return {"id": None, "event": event, "turn": turn, "data": data}

    async def connect(self) -> None:
        if not await self.authenticate():
            return
        raw_id = self.scope["url_route"]["kwargs"]["session_id"]
        self.session = await self._load(self.identity, raw_id)
        if self.session is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.join(session_group(self.session.id))
        await self.accept()
        await self.watch_principal()
        last = self._last_event_id()
        if last is not None:
            for message in await self._backlog(last):
                await self._forward(message)

    @database_sync_to_async
    def _load(self, identity: Identity, raw_id: Any) -> AgentSession | None:
        try:
            return selectors.session_get(identity=identity, session_id=uuid.UUID(str(raw_id)))
        except (AgentSession.DoesNotExist, ValueError):
            return None

    async def still_allowed(self, identity: Identity) -> bool:
        # A role change can also hide the session itself (members see only their own).
        assert self.session is not None
        return await super().still_allowed(identity) and (
            await self._load(identity, self.session.id) is not None
        )

    def _last_event_id(self) -> int | None:
        query = parse_qs((self.scope.get("query_string") or b"").decode())
        values = query.get("last_event_id") or []
        # Not an event id (or beyond the column's range): no replay, as without one.
        return parse_event_id(values[0]) if values else None

    @database_sync_to_async
    def _backlog(self, after: int) -> list[dict[str, Any]]:
        assert self.session is not None
        return [
            row_to_wire(r) for r in selectors.event_list_after(session=self.session, after_id=after)
        ]

    async def handle(self, kind: Any, content: dict[str, Any]) -> None:
        if kind == "message":
            authorize(self.identity, Permission.TURN_START)
            data = await self._enqueue(
                content.get("content"), content.get("allow_model_upgrade") is True
            )
        elif kind == "cancel":
            authorize(self.identity, Permission.TURN_CANCEL)
            data = await self._cancel(content.get("turn"))
        else:
            raise WardenError(
                'Send {"type": "message", "content": "..."}.', code="unsupported_message"
            )
        await self.send_json(self.envelope("ack", data, turn=data["turn_id"]))

    @database_sync_to_async
    def _enqueue(self, message: Any, allow_model_upgrade: bool = False) -> dict[str, Any]:
        assert self.session is not None
        user = self.scope.get("user")
        turn = services.turn_enqueue(
            session=self.session,
            message=message,
            requested_by=user,
            allow_model_upgrade=allow_model_upgrade,
        )
        return {"turn_id": str(turn.id), "seq": turn.seq, "status": turn.status}

    @database_sync_to_async
    def _cancel(self, turn_id: Any) -> dict[str, Any]:
        try:
            turn = selectors.turn_get(identity=self.identity, turn_id=uuid.UUID(str(turn_id)))
        except (ValueError, Turn.DoesNotExist) as exc:
            raise WardenError("No such turn.", code="not_found") from exc
        turn = services.turn_cancel(turn=turn)
        return {"turn_id": str(turn.id), "status": turn.status}

    async def _forward(self, message: dict[str, Any]) -> None:
        visible = event_visible(self.identity, message)
        if visible is not None and not self.ended:
            await self.send_json(visible)

    async def session_event(self, message: dict[str, Any]) -> None:
        await self._forward(to_wire(message))  # type: ignore[arg-type]
