"""ASGI entry point: HTTP through Django, websockets through Channels (daphne serves both)."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections


class SyncChainASGIHandler(ASGIHandler):
    """Django's ASGI handler with the middleware chain run as one synchronous call on one
    thread per request, as under WSGI.

    Django's own handler builds an async chain: every `MiddlewareMixin` (sessions, CSRF,
    auth, messages, ...) then runs its `process_request`/`process_response` through
    `sync_to_async`, and a sync-only middleware (WhiteNoise) bounces back to the event loop
    with `async_to_sync`: about ten thread hops per request through daphne's busy loop,
    ~3 ms of `POST /turns`' 13 (benchmarks/bench_turns.py). Here the request makes one hop
    into a thread and back; an async view (the SSE stream) runs on the loop through
    `async_to_sync`, and its streamed body is sent from the loop as before.

    Requests run side by side, each on a thread of the loop's executor, not one after another
    on the loop's single "thread-sensitive" thread: while one waits for PostgreSQL or Redis,
    another runs. With 20 turns started at once (benchmarks/bench_turns.py, 300 ms model),
    `POST /turns` p50 137 → 110 ms and the turn's p50 1128 → 1084 ms. Each request gives its
    database connection back to the pool when its chain returns, in the thread that used it
    (Django's request_finished does so only on the thread-sensitive thread).
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        chain: Any = self._middleware_chain  # type: ignore[has-type]

        def run(request: Any) -> Any:
            try:
                return chain(request)
            finally:
                close_old_connections()

        self._middleware_chain = sync_to_async(run, thread_sensitive=False)


django.setup(set_prefix=False)  # what get_asgi_application() does before building its handler
django_asgi_app = SyncChainASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from apps.tenants.ws_auth import TenantAuthMiddlewareStack  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            TenantAuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
