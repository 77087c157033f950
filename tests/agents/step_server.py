"""An OpenAI-compatible model on 127.0.0.1 that plays a fixed ReAct script for any number of
turns at once, and shows what the platform did with it.

Each request is answered from the conversation alone: the step is the number of tool
results after the last user message, so interleaved turns never confuse it. The last user
message names the turn (the test puts a tag in it). The server records, per tag, which
steps were asked for and how many of that tag's requests were in flight at once, and it can:

- hold requests until `gate` of them are in flight together (proof of parallelism that
  needs no clock), or until `release()`;
- hold requests at `hold_step` until `release()` (a worker can be killed with them in flight);
- never answer requests whose tag is in `hang_tags`, until the client gives up.
"""

from __future__ import annotations

import json
import select
import threading
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GATE_WAIT_S = 30.0  # a gate never reached answers 503, so a broken platform fails, not hangs


class StepModelServer:
    def __init__(
        self,
        steps: list[tuple[str, dict[str, Any]]],
        *,
        final: str = "done",
        gate: int = 0,
        gate_step: int | None = None,
        hold_step: int | None = None,
        hang_tags: frozenset[str] = frozenset(),
    ) -> None:
        self.steps, self.final = steps, final
        self.gate, self.gate_step, self.hold_step = gate, gate_step, hold_step
        self.held = 0  # requests waiting at hold_step now
        self.hang_tags = hang_tags
        self.cond = threading.Condition()
        self.released = False
        self.in_flight: Counter[str] = Counter()  # tag → requests in flight now
        self.max_in_flight: Counter[str] = Counter()  # tag → most at once
        self.total_in_flight = 0
        self.max_total_in_flight = 0
        self.asked: dict[str, list[int]] = defaultdict(list)  # tag → steps asked for, in order
        self.given_up: list[str] = []  # tags whose request the client abandoned
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._httpd.request_queue_size = 128
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def release(self) -> None:
        with self.cond:
            self.released = True
            self.cond.notify_all()

    def stop(self) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()

    def wait_for(self, predicate: Any, timeout: float = 60.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout)

    # ------------------------------------------------------------------ protocol

    def _reply(self, step: int, tag: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if step < len(self.steps):
            name, arguments = self.steps[step]
            message["tool_calls"] = [
                {
                    "id": f"call_{step}",
                    "type": "function",
                    "function": {
                        "name": name,
                        # "{tag}" in an argument becomes the turn's tag
                        "arguments": json.dumps(arguments).replace("{tag}", tag),
                    },
                }
            ]
            reason = "tool_calls"
        else:
            message["content"], reason = self.final, "stop"
        return {
            "id": "chatcmpl-step",
            "object": "chat.completion",
            "created": 0,
            "model": "step-model",
            "choices": [{"index": 0, "message": message, "finish_reason": reason}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                messages = body.get("messages", [])
                last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
                tag = str(messages[last_user].get("content"))
                step = sum(1 for m in messages[last_user:] if m.get("role") == "tool")
                with server.cond:
                    server.asked[tag].append(step)
                    server.in_flight[tag] += 1
                    server.total_in_flight += 1
                    server.max_in_flight[tag] = max(
                        server.max_in_flight[tag], server.in_flight[tag]
                    )
                    server.max_total_in_flight = max(
                        server.max_total_in_flight, server.total_in_flight
                    )
                    server.cond.notify_all()
                try:
                    if tag in server.hang_tags:
                        self._hang(tag)
                        return
                    if step == server.hold_step:
                        self._hold()
                    if not self._pass_gate(step):
                        self._send(503, {"error": {"message": "gate not reached"}}, False)
                        return
                    self._send(200, server._reply(step, tag), bool(body.get("stream")))
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server.cond:
                        server.in_flight[tag] -= 1
                        server.total_in_flight -= 1
                        server.cond.notify_all()

            def _pass_gate(self, step: int) -> bool:
                if not server.gate or (server.gate_step is not None and step != server.gate_step):
                    return True
                with server.cond:
                    return server.cond.wait_for(
                        lambda: (
                            server.released
                            or server.total_in_flight >= server.gate
                            or server.max_total_in_flight >= server.gate
                        ),
                        GATE_WAIT_S,
                    )

            def _hold(self) -> None:
                with server.cond:
                    server.held += 1
                    server.cond.notify_all()
                    server.cond.wait_for(lambda: server.released, GATE_WAIT_S)
                    server.held -= 1

            def _hang(self, tag: str) -> None:
                # Never answer; notice when the client hangs up (its timeout cut the call).
                while not server.released:
                    readable, _, _ = select.select([self.connection], [], [], 0.1)
                    if readable and not self.connection.recv(1, 0x2):  # MSG_PEEK: EOF?
                        with server.cond:
                            server.given_up.append(tag)
                            server.cond.notify_all()
                        return

            def _send(self, status: int, payload: dict[str, Any], stream: bool) -> None:
                if not stream:
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                choice = payload["choices"][0]
                delta = dict(choice["message"])
                for index, call in enumerate(delta.get("tool_calls") or []):
                    call["index"] = index
                base = {k: payload[k] for k in ("id", "created", "model")}
                base["object"] = "chat.completion.chunk"
                chunks = [
                    {**base, "choices": [{"index": 0, "delta": delta}]},
                    {
                        **base,
                        "choices": [
                            {"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}
                        ],
                    },
                    {**base, "choices": [], "usage": payload["usage"]},
                ]
                self.close_connection = True
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for chunk in chunks:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler
