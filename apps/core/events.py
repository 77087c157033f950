"""Realtime publishing: typed payloads sent after commit to channel-layer groups.

Publishing never blocks the caller. `async_to_sync(layer.group_send)` from a worker thread
starts a thread and an event loop per call, and channels_redis opens its Redis connections
per event loop: about 4 ms for every event and every streamed token, paid by the turn. So
each process has one publisher thread with one long-lived event loop (and so one set of
Redis connections); callers put messages on its queue and go on. The thread sends them one
at a time, in the order they were queued, so a session's events reach subscribers in order
(the SSE stream drops an event whose id is below one it already sent).

Live delivery is best effort, as it always was: the durable events are rows, and a client
that missed one gets it from the backlog (`Last-Event-ID`). If the queue is full (the
channel layer is down or far behind) a message is dropped with a warning rather than
holding up turns or growing without bound.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, Literal, TypedDict

from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger("warden.events")

MAX_PENDING = 10_000


def tenant_group(tenant_id: object) -> str:
    return f"tenant.{tenant_id}"


class TenantEvent(TypedDict):
    type: Literal["tenant.event"]
    event: str
    data: dict[str, Any]


class _Publisher:
    """The process's publishing thread; started on first use (again after a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(MAX_PENDING)
        self._thread: threading.Thread | None = None

    def send(self, group: str, message: dict[str, Any]) -> None:
        if self._pid != os.getpid():
            self._start()
        try:
            self._queue.put_nowait((group, message))
        except queue.Full:
            logger.warning("channel layer behind: live event dropped", extra={"group": group})

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far was sent (for shutdown and tests)."""
        if self._thread is None or self._pid != os.getpid():
            return True
        done = threading.Event()
        try:
            self._queue.put(("", {"__flush__": done}), timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            # After a fork the parent's thread is not ours: start over with a fresh queue.
            self._queue = queue.Queue(MAX_PENDING)
            self._thread = threading.Thread(
                target=self._run, args=(self._queue,), name="warden-publisher", daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()

    @staticmethod
    def _run(pending: queue.Queue[tuple[str, dict[str, Any]] | None]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        carried: list[tuple[str, dict[str, Any]] | None] = []
        while True:
            item = carried.pop() if carried else pending.get()
            if item is None:
                break
            group, message = item
            if message.get("event") == "model.token":
                message = _coalesce_tokens(group, message, pending, carried)
            elif "__flush__" not in message:
                message = _batch(group, message, pending, carried)
            marker = message.get("__flush__")
            if isinstance(marker, threading.Event):
                marker.set()
                continue
            layer = get_channel_layer()
            if layer is None:
                continue
            try:
                loop.run_until_complete(layer.group_send(group, message))
            except Exception:
                logger.exception("could not publish a live event", extra={"group": group})


# The type of a message that carries several for one group, in order: a consumer (the
# JsonFrameConsumer base) and the SSE stream handle each of `messages` as if sent alone.
BATCH = "layer.batch"
MAX_BATCH = 100


def _batch(
    group: str,
    message: dict[str, Any],
    pending: queue.Queue[tuple[str, dict[str, Any]] | None],
    carried: list[tuple[str, dict[str, Any]] | None],
) -> dict[str, Any]:
    """The messages of the same type for the same group queued right behind this one, with
    it, as one message: one send and one receive, not one each. A turn's write commits
    several events at once (a tool step's model.called, policy.decision and tool.call)."""
    kind = message.get("type")
    followers = _followers(
        group,
        pending,
        carried,
        lambda m: m.get("type") == kind and "__flush__" not in m,
        limit=MAX_BATCH - 1,
    )
    if not followers:
        return message
    return {"type": BATCH, "messages": [message, *followers]}


def _coalesce_tokens(
    group: str,
    message: dict[str, Any],
    pending: queue.Queue[tuple[str, dict[str, Any]] | None],
    carried: list[tuple[str, dict[str, Any]] | None],
) -> dict[str, Any]:
    """Merge the token deltas of one turn that queued up behind this one into one message.

    Only when the publisher is behind: a model streams faster than we send. Same text, same
    order, fewer sends.
    """
    turn = message.get("turn")
    followers = _followers(
        group,
        pending,
        carried,
        lambda m: m.get("event") == "model.token" and m.get("turn") == turn,
    )
    if not followers:
        return message
    text = "".join(m["data"]["text"] for m in [message, *followers])
    return {**message, "data": {**message["data"], "text": text}}


def _followers(
    group: str,
    pending: queue.Queue[tuple[str, dict[str, Any]] | None],
    carried: list[tuple[str, dict[str, Any]] | None],
    joins: Callable[[dict[str, Any]], bool],
    *,
    limit: int = MAX_PENDING,
) -> list[dict[str, Any]]:
    """The messages for `group` already queued that `joins` takes, in order, up to `limit`
    of them; the first message of anything else stops it, and is carried over as the next
    one to send."""
    followers: list[dict[str, Any]] = []
    while len(followers) < limit:
        try:
            follower = pending.get_nowait()
        except queue.Empty:
            break
        if follower is not None and follower[0] == group and joins(follower[1]):
            followers.append(follower[1])
            continue
        carried.append(follower)
        break
    return followers


_publisher = _Publisher()
atexit.register(_publisher.flush, 2.0)


def publish_now(group: str, message: dict[str, Any]) -> None:
    """Queue `message` for the group's subscribers; returns at once (see the module doc)."""
    _publisher.send(group, message)


def publish_flush(timeout: float = 5.0) -> bool:
    """Block until the messages queued so far by this process were handed to the layer."""
    return _publisher.flush(timeout)


def publish_on_commit(group: str, message: dict[str, Any]) -> None:
    """Publish only if the surrounding transaction commits: nobody hears of a rolled-back row."""
    transaction.on_commit(lambda: publish_now(group, message))


def tenant_event_publish(*, tenant_id: object, event: str, data: dict[str, Any]) -> None:
    payload: TenantEvent = {"type": "tenant.event", "event": event, "data": data}
    publish_on_commit(tenant_group(tenant_id), dict(payload))
