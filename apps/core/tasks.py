"""Platform tasks."""

from __future__ import annotations

import socket
from typing import Any

from celery import shared_task

from apps.core.context import current_request_id


@shared_task(name="core.ping", acks_late=False)
def ping(payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Round-trip probe: proves broker → worker → result backend, and request-id propagation."""
    return {
        "pong": True,
        "payload": payload,
        "request_id": current_request_id(),
        "worker": socket.gethostname(),
    }
