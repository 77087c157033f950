"""`GET /api/v1/sessions/<id>/events`: the session's events as Server-Sent Events.

Replays stored events after `Last-Event-ID` (header, or `?last_event_id=`), then
follows live ones from the channel layer. We subscribe *before* reading the
backlog and drop live events we already sent, so nothing falls between the two.

Authorized and filtered like the websocket: `session.read` to open, private reasoning
only with `reasoning.read` (`events.event_visible`, live and replayed), and the stream
ends with an `error` event (code `principal_revoked`) once its principal no longer
authenticates or may read the session — checked every `WARDEN_STREAM_REAUTH_SECONDS`
and at once when apps/tenants/signals.py says it changed.
`?follow=0` returns only the backlog and closes.

Each database access gives its connection back to the pool when it is done (`_db`): a
stream stays open for hours, and must not hold a pooled connection for all that time.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from rest_framework.exceptions import APIException

from apps.agents import selectors
from apps.agents.events import (
    MAX_EVENT_ID,
    event_visible,
    parse_event_id,
    row_to_wire,
    session_group,
)
from apps.agents.models import AgentSession
from apps.core.api.errors import error_body, exception_handler
from apps.core.events import BATCH
from apps.core.exceptions import WardenError
from apps.tenants.authz import Permission, allows, authorize
from apps.tenants.identity import Identity
from apps.tenants.principals import identity_current, principal_groups
from apps.tenants.request_auth import authenticate_request


def _db(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """`fn` on a worker thread, then its connection goes back (Django would keep it until
    the response ends). Not inside an atomic block: that connection is not ours to close."""

    def run(*args: Any) -> T:
        try:
            return fn(*args)
        finally:
            if not connection.in_atomic_block:
                connection.close()

    return sync_to_async(run)


def _format(message: dict[str, Any]) -> str:
    lines = []
    if message.get("id") is not None:
        lines.append(f"id: {message['id']}")
    lines.append(f"event: {message['event']}")
    lines.append("data: " + json.dumps(message, separators=(",", ":"), default=str))
    return "\n".join(lines) + "\n\n"


T = TypeVar("T")

_REVOKED = {
    "id": None,
    "event": "error",
    "turn": None,
    "data": {"code": "principal_revoked", "message": "Your credential or access ended."},
}


def _load_session(
    request: HttpRequest, session_id: uuid.UUID
) -> tuple[Identity, AgentSession] | HttpResponse:
    try:
        identity = authenticate_request(request)
        authorize(identity, Permission.SESSION_READ)
    except (APIException, WardenError) as exc:
        response = exception_handler(exc, {})
        answer = JsonResponse(response.data, status=response.status_code)
        for header in ("Retry-After", "WWW-Authenticate"):
            if header in response:
                answer[header] = response[header]
        return answer
    try:
        return identity, selectors.session_get(identity=identity, session_id=session_id)
    except AgentSession.DoesNotExist:
        return JsonResponse(error_body("not_found", "No such session."), status=404)


def _still_allowed(identity: Identity, session: AgentSession) -> Identity | None:
    """The principal as it is now, if it may still read this session (see PrincipalConsumer)."""
    current = identity_current(identity)
    if current is None or not allows(current, Permission.SESSION_READ):
        return None
    if not selectors.session_list(identity=current).filter(id=session.id).exists():
        return None
    return current


def _visible_backlog(identity: Identity, session: AgentSession, after: int) -> list[dict[str, Any]]:
    rows = selectors.event_list_after(session=session, after_id=after)
    return [m for m in (event_visible(identity, row_to_wire(r)) for r in rows) if m is not None]


_FOLLOW = {"1": True, "true": True, "0": False, "false": False}


def _stream_options(request: HttpRequest) -> tuple[int, bool] | JsonResponse:
    """(resume after this event id, follow live events) — or a 400 saying what is wrong.

    Both spellings of the resume point are checked when given (the header wins), so a
    malformed one is refused rather than silently ignored; `follow` is a boolean, and
    anything else is refused rather than taken to mean "follow" (a stream that never ends).
    """
    last_id = 0
    for raw in (request.GET.get("last_event_id"), request.headers.get("Last-Event-ID")):
        if raw is None:
            continue
        parsed = parse_event_id(raw)
        if parsed is None:
            return JsonResponse(
                error_body(
                    "invalid_last_event_id",
                    f"Last-Event-ID must be an event id (an integer from 0 to {MAX_EVENT_ID}).",
                ),
                status=400,
            )
        last_id = parsed
    follow = _FOLLOW.get(request.GET.get("follow", "true").lower())
    if follow is None:
        return JsonResponse(
            error_body("invalid_follow", "follow must be true or false (1 or 0)."), status=400
        )
    return last_id, follow


async def session_events(
    request: HttpRequest, session_id: uuid.UUID
) -> HttpResponse | StreamingHttpResponse:
    if request.method != "GET":
        refused = JsonResponse(error_body("method_not_allowed", "Use GET."), status=405)
        refused["Allow"] = "GET"
        return refused
    options = _stream_options(request)
    if isinstance(options, HttpResponse):
        return options
    last_id, follow = options
    loaded = await _db(_load_session)(request, session_id)
    if isinstance(loaded, HttpResponse):
        return loaded
    identity, session = loaded
    keepalive = settings.WARDEN_SSE_KEEPALIVE_SECONDS
    reauth_every = settings.WARDEN_STREAM_REAUTH_SECONDS

    async def stream() -> AsyncIterator[str]:
        nonlocal identity
        sent = last_id
        layer = get_channel_layer()
        channel = await layer.new_channel() if follow else None
        groups = [session_group(session.id), *principal_groups(identity)] if channel else []
        for group in groups:
            await layer.group_add(group, channel)
        # One pending receive, kept across timeouts: a receive is never cancelled midway.
        pending: asyncio.Future[dict[str, Any]] | None = None
        try:
            yield "retry: 2000\n\n"
            for message in await _db(_visible_backlog)(identity, session, sent):
                sent = max(sent, message["id"])
                yield _format(message)
            loop = asyncio.get_running_loop()
            next_reauth = loop.time() + reauth_every
            last_sent = loop.time()
            while channel:
                if pending is None:
                    pending = asyncio.ensure_future(layer.receive(channel))
                wait = max(0.0, min(next_reauth, last_sent + keepalive) - loop.time())
                done, _ = await asyncio.wait({pending}, timeout=wait)
                raw = pending.result() if done else None
                if done:
                    pending = None
                # Several messages the publisher sent as one come in order (core/events.py).
                messages = [] if raw is None else [raw]
                if raw is not None and raw.get("type") == BATCH:
                    messages = raw["messages"]
                changed = any(m.get("type") == "principal.changed" for m in messages)
                if changed or loop.time() >= next_reauth:
                    current = await _db(_still_allowed)(identity, session)
                    if current is None:
                        yield _format(_REVOKED)
                        return
                    identity = current
                    next_reauth = loop.time() + reauth_every
                if not messages or changed:
                    if loop.time() >= last_sent + keepalive:
                        last_sent = loop.time()
                        yield ": keep-alive\n\n"
                    continue
                frames = []
                for message in messages:
                    live = event_visible(
                        identity, {k: message.get(k) for k in ("id", "event", "turn", "data")}
                    )
                    if live is None:
                        continue
                    if live["id"] is not None:
                        if live["id"] <= sent:
                            continue  # already sent from the backlog
                        sent = live["id"]
                    frames.append(_format(live))
                if frames:
                    last_sent = loop.time()
                    yield "".join(frames)
        finally:
            if pending is not None:
                pending.cancel()
            for group in groups:
                await layer.group_discard(group, channel)

    response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
