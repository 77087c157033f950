"""OpenTelemetry for this process: the provider (apps/core/telemetry.py) and the Django,
Celery and psycopg instrumentations, set up once per process.

Called from CoreConfig.ready, so every process that sets Django up gets it before it serves
or runs anything: daphne (django.setup() in config/asgi.py comes before the handler and its
middleware chain are built), the Celery worker and beat (Celery's Django fix-up sets Django
up at start), management commands. A prefork worker's children inherit it; the SDK's batch
processor restarts its export thread in a forked child by itself (os.register_at_fork), and
config/celery.py calls `instrumentation_setup` again from worker_process_init, which finds
it done.

psycopg: opentelemetry-instrumentation-psycopg 0.66b1 (the newest) pins the 0.66b1 dbapi
instrumentation, which pins semantic conventions 0.66b1, while SDK 1.45.2 (the API the
platform already has) needs 0.66b2: they cannot be installed together. So psycopg is traced
here with the 0.66b2 dbapi instrumentation it is built on, the way that package does it: a
traced cursor class passed to `psycopg.Connection.connect` (Django's pool connects through
it), so Django keeps its own cursor class underneath and no proxy wraps the connection.
Statements are recorded with their placeholders, never their parameters. The statements of one
psycopg pipeline (apps/core/batch.py) travel and are answered together: they are one span,
`BATCH`, with all of them in its statement and `db.operation.batch.size`, as OpenTelemetry's
database conventions name a batch.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Any, cast

import psycopg
import wrapt
from django.conf import settings
from opentelemetry import trace
from opentelemetry.instrumentation import dbapi
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from apps.core import telemetry

_done = threading.Lock()
_instrumented = False

# Probes and scrapes are not worth a trace each.
EXCLUDED_URLS = "healthz,readyz,metrics"


def instrumentation_setup(*, process: str = "") -> None:
    """Once per process: the provider (exporting when OTEL_EXPORTER_OTLP_ENDPOINT is set) and,
    unless WARDEN_TELEMETRY is off, the library instrumentations."""
    global _instrumented
    with _done:
        if _instrumented:
            return
        _instrumented = True
    provider = telemetry.telemetry_setup(
        service_name=settings.OTEL_SERVICE_NAME,
        otlp_endpoint=settings.OTEL_EXPORTER_OTLP_ENDPOINT,
        attributes={"warden.process": process} if process else {},
    )
    if not settings.WARDEN_TELEMETRY:
        return
    DjangoInstrumentor().instrument(
        tracer_provider=provider, excluded_urls=EXCLUDED_URLS, request_hook=_path_only
    )
    CeleryInstrumentor().instrument(tracer_provider=provider)
    psycopg_instrument(provider)


# URLs on request spans, in the old and the stable semantic conventions.
_URL_ATTRIBUTES = ("http.url", "http.target", "url.full")


def _path_only(span: Any, request: Any) -> None:
    """Keys belong in headers, but a client may put one (or anything else) in a query
    string: request spans keep the URL without it."""
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and "?" in value:
            span.set_attribute(key, value.split("?", 1)[0])
    if attributes.get("url.query"):
        span.set_attribute("url.query", "")


# --------------------------------------------------------------------------- psycopg

# The statements of the psycopg pipeline this thread has open (apps/core/batch.py).
_pipelines = threading.local()

_CONNECTION_ATTRIBUTES = {
    "database": "info.dbname",
    "port": "info.port",
    "host": "info.host",
    "user": "info.user",
}


def psycopg_instrument(provider: TracerProvider) -> None:
    integration = dbapi.DatabaseApiIntegration(
        "warden.psycopg",
        "postgresql",
        connection_attributes=_CONNECTION_ATTRIBUTES,
        tracer_provider=provider,
        connect_module=cast(Any, psycopg),
    )
    cursor_tracer: dbapi.CursorTracer[Any] = dbapi.CursorTracer(integration)
    tracer = trace.get_tracer("warden.psycopg", tracer_provider=provider)

    @functools.cache
    def traced(base: type[Any]) -> type[Any]:
        class TracedCursor(base):  # type: ignore[valid-type,misc]
            # A statement's span is a leaf: while nothing records (no exporter), there is
            # no span to make and no trace id to pass on, and the statement runs untraced.
            def execute(self, *args: Any, **kwargs: Any) -> Any:
                if not telemetry.recording():
                    return super().execute(*args, **kwargs)
                batch = getattr(_pipelines, "open", None)
                if batch is not None and self.connection.pgconn.pipeline_status:
                    # Sent with the pipeline's other statements, answered at its end: one
                    # span for the round trip (below), not one per statement.
                    batch.append((self, args[0] if args else ""))
                    return super().execute(*args, **kwargs)
                return cursor_tracer.traced_execution(self, super().execute, *args, **kwargs)

            def executemany(self, *args: Any, **kwargs: Any) -> Any:
                if not telemetry.recording():
                    return super().executemany(*args, **kwargs)
                return cursor_tracer.traced_execution(self, super().executemany, *args, **kwargs)

        TracedCursor.__name__ = TracedCursor.__qualname__ = f"Traced{base.__name__}"
        return TracedCursor

    def connect(wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        kwargs["cursor_factory"] = traced(kwargs.get("cursor_factory") or psycopg.Cursor)
        connection = wrapped(*args, **kwargs)
        integration.get_connection_attributes(connection)
        return connection

    @contextlib.contextmanager
    def traced_pipeline(opened: Any) -> Iterator[Any]:
        outer = getattr(_pipelines, "open", None)
        # Nested, the outermost pipeline's span has it all; unrecorded, there is none.
        if outer is not None or not telemetry.recording():
            with opened as pipeline:
                yield pipeline
            return
        batch: list[tuple[Any, Any]] = []
        _pipelines.open = batch
        try:
            with tracer.start_as_current_span("BATCH", kind=SpanKind.CLIENT) as span:
                try:
                    with opened as pipeline:
                        yield pipeline
                finally:
                    if batch and span.is_recording():
                        statement = ";\n".join(str(query) for _, query in batch)
                        cursor_tracer._populate_span(span, batch[0][0], statement)  # type: ignore[arg-type]
                        span.set_attribute("db.operation.batch.size", len(batch))
        finally:
            _pipelines.open = None

    def pipeline(wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        return traced_pipeline(wrapped(*args, **kwargs))

    wrapt.wrap_function_wrapper(psycopg.Connection, "connect", connect)
    wrapt.wrap_function_wrapper(psycopg, "connect", connect)
    wrapt.wrap_function_wrapper(psycopg.Connection, "pipeline", pipeline)
