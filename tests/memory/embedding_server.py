"""A real HTTP server on 127.0.0.1 speaking the OpenAI `/v1/embeddings` protocol.

It embeds with the hash embedder (so its vectors match the tests' expectations), counts the
texts it was asked to embed, and can be switched `down` (answers 503, as a server that is
up but overloaded) or stopped (connection refused) and started again on the same port.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from apps.memory.embeddings import HashEmbedder


class EmbeddingServer:
    def __init__(self, dimensions: int = 384) -> None:
        self.embedder = HashEmbedder(dimensions)
        self.down = False
        # Goes down by itself after this many answered requests (None: never).
        self.down_after: int | None = None
        self.inputs: list[str] = []
        self.requests = 0
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                owner.requests += 1
                if self.path != "/v1/embeddings":
                    self._send(404, {"error": {"message": "not found", "type": "x"}})
                    return
                if owner.down_after is not None and owner.requests > owner.down_after:
                    owner.down = True
                if owner.down:
                    self._send(503, {"error": {"message": "overloaded", "type": "server"}})
                    return
                texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                owner.inputs.extend(texts)
                vectors = owner.embedder.embed(texts)
                self._send(
                    200,
                    {
                        "object": "list",
                        "model": body.get("model", "test"),
                        "data": [
                            {"object": "embedding", "index": i, "embedding": v}
                            for i, v in enumerate(vectors)
                        ],
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    },
                )

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
