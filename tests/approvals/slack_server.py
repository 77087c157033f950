"""A Slack Web API on 127.0.0.1 for slack-sdk's WebClient(base_url=...): the methods the
approvals use — chat.postMessage, chat.update, chat.postEphemeral, views.open — answered as
Slack answers them, every call recorded (method, bearer token, JSON body).

`fail_with` makes every call answer that HTTP status (Slack down, or rate-limiting).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHANNEL = "C0APPROVALS"


@dataclass
class Call:
    method: str
    token: str
    body: dict[str, Any]


class SlackServer:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.fail_with: int | None = None
        self._ts = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/api/"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def _answer(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if method == "chat.postMessage":
            if not body.get("channel") or not (body.get("text") or body.get("blocks")):
                return {"ok": False, "error": "invalid_arguments"}
            with self._lock:
                self._ts += 1
                ts = f"1700000000.{self._ts:06d}"
            return {"ok": True, "channel": body["channel"], "ts": ts, "message": {"ts": ts}}
        if method == "chat.update":
            if not body.get("channel") or not body.get("ts"):
                return {"ok": False, "error": "invalid_arguments"}
            return {"ok": True, "channel": body["channel"], "ts": body["ts"]}
        if method == "chat.postEphemeral":
            if not body.get("channel") or not body.get("user"):
                return {"ok": False, "error": "invalid_arguments"}
            return {"ok": True, "message_ts": "1700000000.999999"}
        if method == "views.open":
            if not body.get("trigger_id") or not isinstance(body.get("view"), dict):
                return {"ok": False, "error": "invalid_arguments"}
            return {"ok": True, "view": {"id": "V0MODAL", **body["view"]}}
        return {"ok": False, "error": "unknown_method"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                method = self.path.rsplit("/", 1)[-1]
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else {}
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                server.calls.append(Call(method=method, token=token, body=body))
                if server.fail_with is not None:
                    self._send(server.fail_with, {"ok": False, "error": "fatal_error"})
                    return
                if not token.startswith("xoxb-"):
                    self._send(200, {"ok": False, "error": "not_authed"})
                    return
                self._send(200, server._answer(method, body))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
