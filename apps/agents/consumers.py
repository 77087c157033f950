"""`/ws/sessions/<id>/`: chat with an agent and watch every step.

Client → server: {"type": "message", "content": "..."}, {"type": "cancel", "turn": "<id>"},
{"type": "ping"}. Server → client: every session event as
{"id", "event", "turn", "data"} (model tokens have no id). `?last_event_id=N`
replays what was missed. Several clients may watch one session; their messages
queue as turns in arrival order.
"""

from __future__ import annotations

import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.agents import selectors, services
from apps.agents.events import row_to_wire, session_group, to_wire
from apps.agents.models import AgentSession, Turn
from apps.core.consumers import CLOSE_UNAUTHENTICATED
from apps.core.exceptions import WardenError
from apps.tenants.identity import Identity

CLOSE_NOT_FOUND = 4404


class SessionConsumer(AsyncJsonWebsocketConsumer):
    session: AgentSession | None = None

    async def connect(self) -> None:
        identity: Identity | None = self.scope.get("identity")
        if identity is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.identity = identity
        self.session = await self._load(self.scope["url_route"]["kwargs"]["session_id"])
        if self.session is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = session_group(self.session.id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        last = self._last_event_id()
        if last is not None:
            for message in await self._backlog(last):
                await self.send_json(message)

    @database_sync_to_async
    def _load(self, raw_id: str) -> AgentSession | None:
        try:
            return selectors.session_get(identity=self.identity, session_id=uuid.UUID(str(raw_id)))
        except (AgentSession.DoesNotExist, ValueError):
            return None

    def _last_event_id(self) -> int | None:
        from urllib.parse import parse_qs

        query = parse_qs((self.scope.get("query_string") or b"").decode())
        try:
            return int(query["last_event_id"][0])
        except (KeyError, ValueError, IndexError):
            return None

    @database_sync_to_async
    def _backlog(self, after: int) -> list[dict[str, Any]]:
        assert self.session is not None
        return [
            row_to_wire(r) for r in selectors.event_list_after(session=self.session, after_id=after)
        ]

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "ping":
            await self.send_json({"id": None, "event": "pong", "turn": None, "data": {}})
            return
        try:
            if kind == "message":
                data = await self._enqueue(content.get("content"))
            elif kind == "cancel":
                data = await self._cancel(content.get("turn"))
            else:
                raise WardenError(
                    'Send {"type": "message", "content": "..."}.', code="unsupported_message"
                )
        except WardenError as exc:
            await self.send_json(
                {
                    "id": None,
                    "event": "error",
                    "turn": None,
                    "data": {"code": exc.code, "message": exc.message},
                }
            )
            return
        await self.send_json({"id": None, "event": "ack", "turn": data["turn_id"], "data": data})

    @database_sync_to_async
    def _enqueue(self, message: Any) -> dict[str, Any]:
        assert self.session is not None
        user = self.scope.get("user")
        turn = services.turn_enqueue(session=self.session, message=message, requested_by=user)
        return {"turn_id": str(turn.id), "seq": turn.seq, "status": turn.status}

    @database_sync_to_async
    def _cancel(self, turn_id: Any) -> dict[str, Any]:
        try:
            turn = selectors.turn_get(identity=self.identity, turn_id=uuid.UUID(str(turn_id)))
        except (ValueError, Turn.DoesNotExist) as exc:
            raise WardenError("No such turn.", code="not_found") from exc
        turn = services.turn_cancel(turn=turn)
        return {"turn_id": str(turn.id), "status": turn.status}

    async def session_event(self, message: dict[str, Any]) -> None:
        await self.send_json(to_wire(message))  # type: ignore[arg-type]
