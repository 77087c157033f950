"""Shared helpers for the channel security tests (websocket, SSE)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application

ORIGIN = (b"origin", b"http://localhost")
# Streams must end within 5 s of their principal ending (issue 7).
REVOCATION_DEADLINE = 5.0


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def ws_connect(
    path: str, *, key: str | None = None, cookie: str | None = None
) -> WebsocketCommunicator:
    headers = [ORIGIN]
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    comm = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await comm.connect()
    assert connected, f"refused with {code}"
    return comm


async def receive_until_close(
    comm: WebsocketCommunicator, *, timeout: float = REVOCATION_DEADLINE
) -> tuple[int, list[dict[str, Any]]]:
    """Frames until the server closes the socket: (close code, JSON frames before it)."""
    frames: list[dict[str, Any]] = []
    while True:
        output = await comm.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output.get("code", 1000), frames
        frames.append(json.loads(output["text"]))


async def receive_event(
    comm: WebsocketCommunicator, event: str, *, timeout: float = 10
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Frames up to and including the first `event`: (that frame, everything received)."""
    seen: list[dict[str, Any]] = []
    while True:
        frame = await comm.receive_json_from(timeout=timeout)
        seen.append(frame)
        if frame["event"] == event:
            return frame, seen


def sse_events(
    lines: httpx.Response | Iterator[str], *, until: str | None = None
) -> Iterator[dict[str, Any]]:
    """Parse an SSE stream (a response or its line iterator) until an event of type
    `until` (inclusive) or the stream's end."""
    fields: dict[str, str] = {}
    for line in lines.iter_lines() if isinstance(lines, httpx.Response) else lines:
        if line == "":
            if "data" in fields:
                event = json.loads(fields["data"])
                event["_sse_id"] = fields.get("id")
                yield event
                if until is not None and event["event"] == until:
                    return
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value


def sse_client() -> httpx.Client:
    """A client whose reads give up after the revocation deadline: a stream that should
    have ended but stays silent fails the test with a ReadTimeout."""
    return httpx.Client(timeout=httpx.Timeout(REVOCATION_DEADLINE + 1, connect=5))
