"""Traces and step metrics: the OpenTelemetry side of every step, framework-free.

The loop (apps/agents/runtime) opens a span per step through `step_span`; anything else
that does a step's work (memory retrieval, ...) calls it the same way. Django, Celery and
psycopg spans come from apps/core/instrumentation.py, which calls `telemetry_setup` once per
process. Nothing here imports Django: the pure loop may use it.

Cost when nothing exports (OTEL_EXPORTER_OTLP_ENDPOINT unset): the provider's sampler drops
every span, so a span is a non-recording one — a trace id and a span id, no attributes, no
processor — but the trace id is real and propagates (web → Celery → the loop), which is
what events and action-graph nodes store as their correlation id. README "Traces and
metrics" has the measured figure.

What a span carries: ids, model and tool names, token counts, cost, latency, decisions.
Never a prompt, an argument, a result, or an exception's message (its type only).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes

__all__ = [
    "STEP_KINDS",
    "StepSpan",
    "current_trace_id",
    "exporter_add",
    "metric_add",
    "metrics_drain",
    "step_span",
    "telemetry_setup",
    "turn_span",
]

# The steps of a turn, each a span and a latency histogram series.
STEP_KINDS = (
    "prompt_build",
    "model_call",
    "retrieval",
    "tool_call",
    "policy_check",
    "approval_wait",
)

# GenAI semantic conventions (https://opentelemetry.io/docs/specs/semconv/gen-ai/): the names
# used here, spelled out once.
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
ERROR_TYPE = "error.type"

tracer = trace.get_tracer("warden")


# --------------------------------------------------------------------------- the provider


class _RecordWhileExporting(Sampler):
    """Drops every span until an exporter is added, then records by the parent's decision.

    A dropped span still gets a real trace id (the SDK makes one for it) and passes it to its
    children and, through Celery's headers, to the worker: correlation ids cost nothing."""

    def __init__(self) -> None:
        self.inner: Sampler = ALWAYS_OFF

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        return self.inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"RecordWhileExporting{{{self.inner.get_description()}}}"


_sampler = _RecordWhileExporting()
_provider: TracerProvider | None = None
_setup_lock = threading.Lock()


def telemetry_setup(
    *, service_name: str = "warden", otlp_endpoint: str = "", attributes: Mapping[str, str] = {}
) -> TracerProvider:
    """The process's tracer provider, made (and made global) on the first call only.

    `otlp_endpoint` (OTEL_EXPORTER_OTLP_ENDPOINT): spans go there over OTLP/HTTP+protobuf
    (`<endpoint>/v1/traces`) through a batch processor; empty, nothing is exported."""
    global _provider
    with _setup_lock:
        if _provider is None:
            # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES; the arguments win.
            resource = Resource.create({"service.name": service_name, **attributes})
            _provider = TracerProvider(sampler=_sampler, resource=resource)
            trace.set_tracer_provider(_provider)
            if otlp_endpoint:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )

                # Headers, timeout, compression: the exporter reads the standard
                # OTEL_EXPORTER_OTLP_* variables itself.
                url = otlp_endpoint.rstrip("/") + "/v1/traces"
                exporter_add(OTLPSpanExporter(endpoint=url))
        return _provider


def exporter_add(exporter: SpanExporter, *, batch: bool = True) -> SpanProcessor:
    """Export spans to `exporter` from now on (and record them: the sampler follows the
    parent's decision, sampling new traces). `batch=False`: synchronously, for tests.
    Shutting the returned processor down stops the export."""
    provider = _provider if _provider is not None else telemetry_setup()
    exporter = _ContentFree(exporter)
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    _sampler.inner = ParentBased(ALWAYS_ON)
    return processor


class _ContentFree(SpanExporter):
    """What leaves the process. Library instrumentations (Django, Celery) record a failing
    request's or task's exception with its message and stack, and put the message in the
    status: both may hold a prompt, an argument or a secret. Only the exception's type goes."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([_scrubbed(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


_KEPT_EXCEPTION_ATTRIBUTES = frozenset({"exception.type", "exception.escaped"})


def _scrubbed(span: ReadableSpan) -> ReadableSpan:
    if not span.events and not span.status.description:
        return span
    events = tuple(
        Event(
            event.name,
            {
                key: value
                for key, value in (event.attributes or {}).items()
                if key in _KEPT_EXCEPTION_ATTRIBUTES
            },
            event.timestamp,
        )
        if event.name == "exception"
        else event
        for event in span.events
    )
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def recording() -> bool:
    """Whether a span may be recorded now: an exporter was added. Until then the sampler drops
    every span, and a span with no children to hand its trace id to is only cost."""
    return _sampler.inner is not ALWAYS_OFF


def force_flush(timeout_ms: int = 5000) -> bool:
    return _provider.force_flush(timeout_ms) if _provider is not None else True


def current_trace_id() -> str:
    """The current span's trace id as 32 hex digits ("" outside any trace): the correlation
    id stored on events and action-graph nodes."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.trace_id else ""


# --------------------------------------------------------------------------- spans


class StepSpan:
    """The open span of a step: attributes are set only when the span records."""

    __slots__ = ("failed", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.failed = False

    def set(self, **attributes: Any) -> None:
        """Attributes by keyword; dotted names through `set_many`."""
        self.set_many(attributes)

    def set_many(self, attributes: Mapping[str, Any]) -> None:
        if self.span.is_recording():
            for key, value in attributes.items():
                if value is not None:
                    self.span.set_attribute(key, value)

    def fail(self, error_type: str) -> None:
        """Mark the step failed with a stable code (no message: messages carry content)."""
        self.failed = True
        if self.span.is_recording():
            self.span.set_attribute(ERROR_TYPE, error_type)
            self.span.set_status(Status(StatusCode.ERROR))


@contextmanager
def step_span(
    kind: str,
    *,
    name: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    start_time_ns: int | None = None,
    client: bool = False,
) -> Iterator[StepSpan]:
    """A span for one step of a turn (a child of the current span: the turn's), and its
    latency in the step histogram. `kind` is one of STEP_KINDS; `name` defaults to it.

    An exception leaving the block marks the span failed with the exception's type (never
    its message) unless the block already called `fail`; a BaseException that is not an
    Exception (a turn unwinding: cancelled, parked on a tool job) is noted as
    `warden.step.interrupted` instead. `client`: the step calls another service (a model).
    `start_time_ns`: the step began earlier (an approval wait, from when the call parked).

        with step_span("retrieval", attributes={"warden.memory.namespace": ns}) as step:
            hits = search(...)
            step.set(**{"warden.memory.hits": len(hits)})
    """
    started = time.perf_counter()
    with tracer.start_as_current_span(
        name or kind,
        kind=SpanKind.CLIENT if client else SpanKind.INTERNAL,
        start_time=start_time_ns,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        step = StepSpan(span)
        if span.is_recording():
            span.set_attribute("warden.step.kind", kind)
            if attributes:
                step.set_many(attributes)
        try:
            yield step
        except BaseException as exc:
            _unwound(step, exc)
            raise
        finally:
            elapsed = (
                time.perf_counter() - started
                if start_time_ns is None
                else (time.time_ns() - start_time_ns) / 1e9
            )
            _metrics.observe(kind, elapsed)


@contextmanager
def turn_span(attributes: Mapping[str, Any]) -> Iterator[StepSpan]:
    """The span of one run of a turn, parent of its step spans."""
    with tracer.start_as_current_span(
        "invoke_agent", record_exception=False, set_status_on_exception=False
    ) as span:
        step = StepSpan(span)
        step.set_many({GEN_AI_OPERATION: "invoke_agent", **attributes})
        try:
            yield step
        except BaseException as exc:
            _unwound(step, exc)
            raise


def _unwound(step: StepSpan, exc: BaseException) -> None:
    if step.failed:
        return
    if isinstance(exc, Exception):
        step.fail(type(exc).__name__)
    else:
        step.set_many({"warden.step.interrupted": type(exc).__name__})


# --------------------------------------------------------------------------- step metrics

# Seconds. A model call takes 0.1-30 s, a tool call ms to minutes, a policy check ~1 ms,
# an approval wait minutes to hours.
STEP_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class _LocalMetrics:
    """This process's not-yet-shared counts: step latencies by kind, and named counters
    with label tuples. A dict update under a lock per observation; the Django side drains
    it into Redis once per turn run (apps/agents/metrics.py), so every process's counts
    reach every web process's /metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, tuple[str, ...]], float] = {}

    def observe(self, kind: str, seconds: float) -> None:
        bucket = next((str(b) for b in STEP_BUCKETS if seconds <= b), "+Inf")
        with self._lock:
            counts = self._counts
            for key, value in (
                (("step_bucket", (kind, bucket)), 1.0),
                (("step_sum", (kind,)), seconds),
            ):
                counts[key] = counts.get(key, 0.0) + value

    def add(self, name: str, labels: tuple[str, ...], value: float) -> None:
        with self._lock:
            key = (name, labels)
            self._counts[key] = self._counts.get(key, 0.0) + value

    def drain(self) -> dict[tuple[str, tuple[str, ...]], float]:
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts


_metrics = _LocalMetrics()


def metric_add(name: str, labels: tuple[str, ...], value: float = 1.0) -> None:
    """Count something for /metrics (tokens, cost, policy denials, turn outcomes)."""
    _metrics.add(name, labels, value)


def metrics_drain() -> dict[tuple[str, tuple[str, ...]], float]:
    """Everything counted in this process since the last drain (and forget it)."""
    return _metrics.drain()
