"""`/ws/tenant/`: tenant-wide notifications (approvals waiting, agents changed, …)."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.core.events import tenant_group

# Close codes in the 4000 range are the application's own (RFC 6455 §7.4.2).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class TenantEventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        identity = self.scope.get("identity")
        if identity is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.group = tenant_group(identity.tenant.id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"event": "connected", "data": {"tenant": identity.tenant.slug}})

    async def disconnect(self, code: int) -> None:
        group = getattr(self, "group", None)
        if group:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"event": "pong", "data": {}})
            return
        await self.send_json(
            {"event": "error", "data": {"code": "unsupported", "message": 'Send {"type": "ping"}.'}}
        )

    async def tenant_event(self, message: dict[str, Any]) -> None:
        await self.send_json({"event": message["event"], "data": message["data"]})
