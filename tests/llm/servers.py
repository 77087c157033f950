"""Real HTTP servers on 127.0.0.1 speaking the chat-completions and Anthropic protocols.

Each server plays queued behaviours, one per request, and records what it received,
so tests go through the official SDKs end to end and can assert on the wire format.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from apps.core.egress import EgressPolicy

# These servers listen on loopback, which the egress guard refuses unless allowed.
LOOPBACK = EgressPolicy(("127.0.0.1",))


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    peer: tuple[str, int] = ("", 0)  # the client's address: one per TCP connection


@dataclass
class Behaviour:
    """What the server does for one request."""

    kind: str  # "json" | "sse" | "raw" | "hang" | "sse_then_hang" | "sse_cut"
    status: int = 200
    body: Any = None
    events: list[str] = field(default_factory=list)
    content_type: str = "application/json"


def reply(body: dict[str, Any], status: int = 200) -> Behaviour:
    return Behaviour("json", status=status, body=body)


def error(status: int, message: str = "boom") -> Behaviour:
    return Behaviour("json", status=status, body={"error": {"message": message, "type": "x"}})


def raw(data: str, *, status: int = 200, content_type: str = "text/html") -> Behaviour:
    return Behaviour("raw", status=status, body=data, content_type=content_type)


def hang() -> Behaviour:
    return Behaviour("hang")


def sse(chunks: list[dict[str, Any] | str], *, done: bool = True) -> Behaviour:
    """Chat-completions stream: `data: {...}` lines, then `data: [DONE]`."""
    events = [f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n" for c in chunks]
    if done:
        events.append("data: [DONE]\n\n")
    return Behaviour("sse", events=events)


def sse_cut(chunks: list[dict[str, Any]]) -> Behaviour:
    """Stream some chunks, then close the connection mid-body (a backend that crashed)."""
    return Behaviour("sse_cut", events=[f"data: {json.dumps(c)}\n\n" for c in chunks])


def sse_then_hang(chunks: list[dict[str, Any]]) -> Behaviour:
    """Stream some chunks, then stall (a backend that died mid-answer)."""
    return Behaviour("sse_then_hang", events=[f"data: {json.dumps(c)}\n\n" for c in chunks])


def anthropic_sse(events: list[tuple[str, dict[str, Any]]]) -> Behaviour:
    """Anthropic stream: `event: <type>` + `data: {...}` pairs."""
    return Behaviour(
        "sse", events=[f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events]
    )


class FakeModelServer:
    """A threaded HTTP server with scriptable behaviours, on a free loopback port."""

    def __init__(self, default: Behaviour | None = None, *, keep_alive: bool = False) -> None:
        # keep_alive: HTTP/1.1 with chunked streams, as a hosted endpoint answers (the
        # default is HTTP/1.0, every response ending with its connection).
        self.keep_alive = keep_alive
        self.queue: deque[Behaviour] = deque()
        self.default = default
        self.received: list[Received] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Base URL for OpenAI-compatible clients."""
        return self.root + "/v1"

    @property
    def bodies(self) -> list[Any]:
        return [r.body for r in self.received]

    @property
    def connections(self) -> int:
        """How many TCP connections the requests so far came in on."""
        return len({r.peer for r in self.received})

    def play(self, *behaviours: Behaviour) -> FakeModelServer:
        self.queue.extend(behaviours)
        return self

    def start(self) -> FakeModelServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()  # let hanging handlers finish
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next(self, received: Received) -> Behaviour:
        with self._lock:
            self.received.append(received)
            if self.queue:
                return self.queue.popleft()
        if self.default is None:
            return error(599, "no behaviour queued")
        return self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if server.keep_alive else "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw_body = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw_body)
                except ValueError:
                    body = raw_body.decode(errors="replace")
                headers = {k.lower(): v for k, v in self.headers.items()}
                peer = (str(self.client_address[0]), int(self.client_address[1]))
                behaviour = server._next(Received(self.path, headers, body, peer))
                try:
                    self._play(behaviour)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): expected in hang tests

            def _play(self, behaviour: Behaviour) -> None:
                if behaviour.kind == "hang":
                    server.release.wait(30)
                    return
                if behaviour.kind in ("json", "raw"):
                    data = (
                        json.dumps(behaviour.body)
                        if behaviour.kind == "json"
                        else str(behaviour.body)
                    ).encode()
                    self.send_response(behaviour.status)
                    self.send_header("Content-Type", behaviour.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                if server.keep_alive:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in behaviour.events:
                    data = event.encode()
                    if server.keep_alive:
                        data = b"%x\r\n%s\r\n" % (len(data), data)
                    self.wfile.write(data)
                    self.wfile.flush()
                if server.keep_alive and behaviour.kind == "sse":
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                if behaviour.kind == "sse_cut":
                    self.close_connection = True  # gone mid-body
                if behaviour.kind == "sse_then_hang":
                    server.release.wait(30)

        return Handler


# -- chat-completions bodies ---------------------------------------------------------


def completion(
    text: str | None = "",
    *,
    tool_calls: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    finish_reason: str = "stop",
    prompt_tokens: int = 11,
    completion_tokens: int = 7,
    model: str = "fake-model",
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in tool_calls
        ]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def chunk(
    *,
    content: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str | None = None,
    usage: tuple[int, int] | None = None,
    choices: bool = True,
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "fake-model",
        "choices": (
            [{"index": 0, "delta": delta, "finish_reason": finish_reason}] if choices else []
        ),
    }
    if usage is not None:
        body["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    return body


def tool_delta(
    index: int, *, id: str | None = None, name: str | None = None, args: str | None = None
) -> dict[str, Any]:
    part: dict[str, Any] = {"index": index}
    if id is not None:
        part["id"] = id
        part["type"] = "function"
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if args is not None:
        function["arguments"] = args
    if function:
        part["function"] = function
    return part


# -- Anthropic bodies ----------------------------------------------------------------


def anthropic_message(
    content: list[dict[str, Any]],
    *,
    stop_reason: str = "end_turn",
    input_tokens: int = 21,
    output_tokens: int = 9,
) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-fake",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
