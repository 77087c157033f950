"""Websockets that live only as long as their principal, and `/ws/tenant/`.

`PrincipalConsumer` is the base of every authenticated websocket: it refuses a
principal without the stream's permission (4401/4403), re-validates the principal
on every incoming message, every `WARDEN_STREAM_REAUTH_SECONDS` and whenever
apps/tenants/signals.py says it changed, and closes the socket (4401 when the
credential no longer authenticates, 4403 when its role lost access) — after which
nothing more is forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from apps.core.consumers import (
    CLOSE_FORBIDDEN,
    CLOSE_THROTTLED,
    CLOSE_UNAUTHENTICATED,
    JsonFrameConsumer,
)
from apps.core.events import tenant_group
from apps.core.exceptions import WardenError
from apps.tenants.authz import Permission, allows
from apps.tenants.identity import Identity
from apps.tenants.principals import identity_current, principal_groups


class PrincipalConsumer(JsonFrameConsumer):
    stream_permission: Permission = Permission.TENANT_READ
    identity: Identity
    ended = False
    _groups: tuple[str, ...] = ()
    _reauth: asyncio.Task[None] | None = None

    def envelope(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"event": event, "data": data}

    def error_message(
        self, code: str, message: str, details: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"code": code, "message": message}
        if details:
            data["details"] = details
        return self.envelope("error", data)

    async def authenticate(self) -> bool:
        """Take the scope's identity, or close (4401/4403/4429) and say False."""
        identity: Identity | None = self.scope.get("identity")
        if identity is None:
            throttled = self.scope.get("auth_error") == "throttled"
            await self.close(code=CLOSE_THROTTLED if throttled else CLOSE_UNAUTHENTICATED)
            return False
        if not allows(identity, self.stream_permission):
            await self.close(code=CLOSE_FORBIDDEN)
            return False
        self.identity = identity
        return True

    async def join(self, *groups: str) -> None:
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self._groups += groups

    async def watch_principal(self) -> None:
        """Call once accepted: from now on the principal is re-validated until the socket ends."""
        await self.join(*principal_groups(self.identity))
        self._reauth = asyncio.create_task(self._reauth_loop())

    async def _reauth_loop(self) -> None:
        interval = settings.WARDEN_STREAM_REAUTH_SECONDS
        while not self.ended:
            await asyncio.sleep(interval)
            await self.revalidate()

    async def still_allowed(self, identity: Identity) -> bool:
        """Whether `identity` may keep this stream; subclasses add what the stream shows."""
        return allows(identity, self.stream_permission)

    async def revalidate(self) -> bool:
        """Re-read the principal; end the stream and say False if it lost access."""
        if self.ended:
            return False
        current = await database_sync_to_async(identity_current)(self.identity)
        if current is None:
            await self.end(CLOSE_UNAUTHENTICATED, "principal_revoked", "Your credential ended.")
            return False
        if not await self.still_allowed(current):
            await self.end(CLOSE_FORBIDDEN, "permission_denied", "You no longer have access.")
            return False
        self.identity = current
        return True

    async def end(self, close_code: int, code: str, message: str) -> None:
        if self.ended:
            return
        self.ended = True
        with contextlib.suppress(Exception):  # the client may already be gone
            await self.send_error(code, message)
        await self.close(code=close_code)

    async def principal_changed(self, message: dict[str, Any]) -> None:
        await self.revalidate()

    async def disconnect(self, code: int) -> None:
        self.ended = True
        if self._reauth is not None:
            self._reauth.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reauth
        for group in self._groups:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # Every message is checked against the principal as it is now, not as it was
        # when the socket opened.
        if not await self.revalidate():
            return
        kind = content.get("type")
        if kind == "ping":
            await self.send_json(self.envelope("pong", {}))
            return
        await self.handle(kind, content)

    async def handle(self, kind: Any, content: dict[str, Any]) -> None:
        raise WardenError('Send {"type": "ping"}.', code="unsupported_message")


class TenantEventsConsumer(PrincipalConsumer):
    """`/ws/tenant/`: tenant-wide notifications (approvals waiting, agents changed, …)."""

    stream_permission = Permission.TENANT_READ

    async def connect(self) -> None:
        if not await self.authenticate():
            return
        await self.join(tenant_group(self.identity.tenant.id))
        await self.accept()
        await self.watch_principal()
        await self.send_json(self.envelope("connected", {"tenant": self.identity.tenant.slug}))

    async def handle(self, kind: Any, content: dict[str, Any]) -> None:
        raise WardenError('Send {"type": "ping"}.', code="unsupported")

    async def tenant_event(self, message: dict[str, Any]) -> None:
        if not self.ended:
            await self.send_json(self.envelope(message["event"], message["data"]))
