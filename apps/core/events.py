"""Realtime publishing: typed payloads sent after commit to channel-layer groups."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction


def tenant_group(tenant_id: object) -> str:
    return f"tenant.{tenant_id}"


class TenantEvent(TypedDict):
    type: Literal["tenant.event"]
    event: str
    data: dict[str, Any]


def publish_now(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group, message)


def publish_on_commit(group: str, message: dict[str, Any]) -> None:
    """Publish only if the surrounding transaction commits: nobody hears of a rolled-back row."""
    transaction.on_commit(lambda: publish_now(group, message))


def tenant_event_publish(*, tenant_id: object, event: str, data: dict[str, Any]) -> None:
    payload: TenantEvent = {"type": "tenant.event", "event": event, "data": data}
    publish_on_commit(tenant_group(tenant_id), dict(payload))
