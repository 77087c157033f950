"""A local server speaking OPA's REST policy and data APIs, evaluating with regopy.

What OpaEngine is tested against (no OPA binary can be installed here): the endpoints it uses,
with OPA's request and answer shapes —
    PUT    /v1/policies/<id>   text/plain Rego → 200 {} | 400 {code, message, errors: [{code,
                               message, location: {file, row, col}}]}
    GET    /v1/policies/<id>   → 200 {"result": {"id", "raw"}} | 404 {code, message}
    DELETE /v1/policies/<id>   → 200 {}
    POST   /v1/data/<path>     {"input": …} → 200 {"result": …} ({} when undefined)
                               | 500 {code: "internal_error", message}
All modules share one data tree, as in OPA. `delay_s` makes every data request slow (an OPA
busy with a runaway policy).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import regopy
from regopy import rego_shared

from apps.policies.engines.base import position
from apps.policies.engines.rego_helper import error_message, error_offset


class OpaLike:
    def __init__(self) -> None:
        self.modules: dict[str, str] = {}
        self.delay_s = 0.0
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _interpreter(self, extra: tuple[str, str] | None = None) -> Any:
        interpreter = regopy.Interpreter()
        interpreter.log_level = regopy.LogLevel.NONE
        modules = dict(self.modules)
        if extra:
            modules[extra[0]] = extra[1]
        for policy_id, source in modules.items():
            interpreter.add_module(policy_id, source)
        return interpreter

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        opa = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_PUT(self) -> None:
                opa.requests.append(("PUT", self.path))
                policy_id = self.path.removeprefix("/v1/policies/")
                source = self._body().decode()
                with opa.lock:
                    try:
                        opa._interpreter((policy_id, source))
                    except regopy.RegoError as exc:
                        text = str(exc)
                        offset = error_offset(text)
                        row, col = position(source, offset) if offset is not None else (0, 0)
                        self._send(
                            400,
                            {
                                "code": "invalid_parameter",
                                "message": "error(s) occurred while compiling module(s)",
                                "errors": [
                                    {
                                        "code": "rego_parse_error",
                                        "message": error_message(text),
                                        "location": {"file": policy_id, "row": row, "col": col},
                                    }
                                ],
                            },
                        )
                        return
                    opa.modules[policy_id] = source
                self._send(200, {})

            def do_GET(self) -> None:
                opa.requests.append(("GET", self.path))
                policy_id = self.path.removeprefix("/v1/policies/")
                source = opa.modules.get(policy_id)
                if source is None:
                    self._send(
                        404,
                        {
                            "code": "resource_not_found",
                            "message": f"storage_not_found_error: policy id {policy_id!r}",
                        },
                    )
                    return
                self._send(200, {"result": {"id": policy_id, "raw": source}})

            def do_DELETE(self) -> None:
                opa.requests.append(("DELETE", self.path))
                policy_id = self.path.removeprefix("/v1/policies/")
                with opa.lock:
                    if opa.modules.pop(policy_id, None) is None:
                        self._send(404, {"code": "resource_not_found", "message": "not found"})
                        return
                self._send(200, {})

            def do_POST(self) -> None:
                opa.requests.append(("POST", self.path))
                path = self.path.split("?")[0].removeprefix("/v1/data/").strip("/")
                body = json.loads(self._body() or b"{}")
                if opa.delay_s:
                    time.sleep(opa.delay_s)
                with opa.lock:
                    interpreter = opa._interpreter()
                    interpreter.set_input_term(json.dumps(body.get("input"), ensure_ascii=False))
                    query = "data." + ".".join(path.split("/")) if path else "data"
                    output = rego_shared.rego_query(interpreter._impl, query)
                    try:
                        ok = rego_shared.rego_output_ok(output)
                        text = rego_shared.rego_output_string(output)
                    finally:
                        rego_shared.rego_free_output(output)
                if not ok or text.lstrip().startswith("("):
                    message = error_message(text) if ok else "eval_conflict_error"
                    self._send(500, {"code": "internal_error", "message": message})
                    return
                if text.strip() == "undefined":
                    self._send(200, {})
                    return
                self._send(200, {"result": json.loads(text)["expressions"][0]})

        return Handler
