"""The ASGI entry point: one thread per request for the whole middleware chain and view."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from asgiref.testing import ApplicationCommunicator
from django.test import override_settings

from config.asgi import SyncChainASGIHandler

pytestmark = pytest.mark.asyncio

SEEN: list[tuple[str, int, bool]] = []


class Recorder:
    """A middleware that can run either way, and records which way and on which thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        SEEN.append(("middleware", threading.get_ident(), self.is_async))
        if self.is_async:
            return self.get_response(request)  # a coroutine: awaited by the caller
        response = self.get_response(request)
        SEEN.append(("view done", threading.get_ident(), False))
        return response


def _scope(path: str, method: str = "GET", headers: list[tuple[bytes, bytes]] = ()) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def _request(app: Any, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    communicator = ApplicationCommunicator(app, _scope(path))
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(10)
    body = b""
    while True:
        message = await communicator.receive_output(10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(10)
    return start["status"], {k.lower(): v for k, v in start["headers"]}, body


async def test_the_chain_runs_synchronously_on_one_thread_per_request(settings) -> None:
    with override_settings(MIDDLEWARE=["tests.core.test_asgi.Recorder", *settings.MIDDLEWARE]):
        app = SyncChainASGIHandler()
    SEEN.clear()

    status, headers, body = await _request(app, "/healthz")

    assert status == 200 and json.loads(body)["status"] == "ok"
    assert headers[b"x-request-id"]  # the project's own middleware ran
    # Django's stock handler would call this async-capable middleware as a coroutine on the
    # event loop (and hop threads for every MiddlewareMixin below it).
    (kind, entered, was_async), (_, left, _) = SEEN
    assert (kind, was_async) == ("middleware", False)
    assert entered == left != threading.get_ident()


async def test_api_errors_and_unknown_routes_still_answer_json() -> None:
    app = SyncChainASGIHandler()

    status, headers, body = await _request(app, "/api/v1/no-such-route")

    assert status == 404 and headers[b"content-type"].startswith(b"application/json")
    assert json.loads(body)["code"] == "not_found"
