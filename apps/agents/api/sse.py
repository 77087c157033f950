"""`GET /api/v1/sessions/<id>/events`: the session's events as Server-Sent Events.

Replays stored events after `Last-Event-ID` (header, or `?last_event_id=`), then
follows live ones from the channel layer. We subscribe *before* reading the
backlog and drop live events we already sent, so nothing falls between the two.
`?follow=0` returns only the backlog and closes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from rest_framework.exceptions import APIException

from apps.agents import selectors
from apps.agents.events import row_to_wire, session_group
from apps.agents.models import AgentSession
from apps.core.api.auth import authenticate_request
from apps.core.api.errors import error_body, exception_handler


def _format(message: dict[str, Any]) -> str:
    lines = []
    if message.get("id") is not None:
        lines.append(f"id: {message['id']}")
    lines.append(f"event: {message['event']}")
    lines.append("data: " + json.dumps(message, separators=(",", ":"), default=str))
    return "\n".join(lines) + "\n\n"


def _load_session(request: HttpRequest, session_id: uuid.UUID) -> AgentSession | HttpResponse:
    try:
        identity = authenticate_request(request)
    except APIException as exc:
        response = exception_handler(exc, {})
        return JsonResponse(response.data, status=response.status_code)
    try:
        return selectors.session_get(identity=identity, session_id=session_id)
    except AgentSession.DoesNotExist:
        return JsonResponse(error_body("not_found", "No such session."), status=404)


def _backlog(session: AgentSession, after: int) -> list[dict[str, Any]]:
    return [row_to_wire(row) for row in selectors.event_list_after(session=session, after_id=after)]


async def session_events(
    request: HttpRequest, session_id: uuid.UUID
) -> HttpResponse | StreamingHttpResponse:
    if request.method != "GET":
        return JsonResponse(error_body("method_not_allowed", "Use GET."), status=405)
    raw_last = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or "0"
    try:
        last_id = int(raw_last)
    except ValueError:
        return JsonResponse(
            error_body("invalid_last_event_id", "Last-Event-ID must be an event id (integer)."),
            status=400,
        )
    loaded = await sync_to_async(_load_session)(request, session_id)
    if isinstance(loaded, HttpResponse):
        return loaded
    session = loaded
    follow = request.GET.get("follow", "1") not in ("0", "false")
    keepalive = settings.WARDEN_SSE_KEEPALIVE_SECONDS

    async def stream() -> AsyncIterator[str]:
        sent = last_id
        layer = get_channel_layer()
        channel = await layer.new_channel() if follow else None
        if channel:
            await layer.group_add(session_group(session.id), channel)
        try:
            yield "retry: 2000\n\n"
            for message in await sync_to_async(_backlog)(session, sent):
                sent = max(sent, message["id"])
                yield _format(message)
            while channel:
                try:
                    raw = await asyncio.wait_for(layer.receive(channel), timeout=keepalive)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                message = {k: raw.get(k) for k in ("id", "event", "turn", "data")}
                if message["id"] is not None:
                    if message["id"] <= sent:
                        continue  # already sent from the backlog
                    sent = message["id"]
                yield _format(message)
        finally:
            if channel:
                await layer.group_discard(session_group(session.id), channel)

    response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
