"""Spans leave the process over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set (daphne
exporting to a local receiver that decodes the protobuf), and a turn's trace crosses from
the web request into the Celery worker that runs it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from apps.agents.models import ActionNode, Agent, SessionEvent, Turn
from apps.budgets.models import UsageRecord
from apps.core import telemetry
from tests.agents.conftest import make_session, wait_for_turn
from tests.conftest import LiveServer, WorkerProcess, World, _test_env, client_for
from tests.telemetry.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.django_db(transaction=True)

MARKER = "quokka-5512-private"
SERVER = 2  # opentelemetry.proto.trace.v1.Span.SpanKind.SPAN_KIND_SERVER


def is_query(span: ReceivedSpan) -> bool:
    # The DB-API instrumentation writes the stable name or the older one, by its opt-in mode.
    attrs = span.attributes
    return "postgresql" in (attrs.get("db.system.name"), attrs.get("db.system"))


@pytest.fixture
def exporting_daphne(otlp_receiver: OtlpReceiver) -> Iterator[str]:
    env = {
        **_test_env(),
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.url,
        "OTEL_SERVICE_NAME": "warden-web-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: export soon after the request
    }
    server = LiveServer(env)
    yield server.url
    server.stop()


def test_daphne_exports_its_request_and_query_spans_over_otlp_http(
    world: World, two_tool_agent: Agent, exporting_daphne: str, otlp_receiver: OtlpReceiver
) -> None:
    import httpx

    session = make_session(two_tool_agent, world.alice)
    client = client_for(world.tenant_a)  # an API key: its header is all daphne needs
    key = client._credentials["HTTP_AUTHORIZATION"]  # type: ignore[attr-defined]
    response = httpx.post(
        f"{exporting_daphne}/api/v1/sessions/{session.id}/turns",
        json={"message": MARKER},
        headers={"Authorization": key},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    turn = Turn.objects.get(session=session)

    def complete(spans: list[ReceivedSpan]) -> bool:
        server = [s for s in spans if s.kind == SERVER and "turns" in s.name]
        return bool(server) and any(s.trace_id == server[0].trace_id and is_query(s) for s in spans)

    spans = otlp_receiver.wait_for(complete)
    server = next(s for s in spans if s.kind == SERVER and "turns" in s.name)
    assert server.resource["service.name"] == "warden-web-test"
    status = server.attributes.get(
        "http.response.status_code", server.attributes.get("http.status_code")
    )
    assert status == 202
    queries = [s for s in spans if s.trace_id == server.trace_id and s.parent_span_id]
    assert any(is_query(q) for q in queries)
    # The event the request stored names the trace the collector received.
    accepted = SessionEvent.objects.get(turn=turn, type="turn.accepted")
    assert accepted.trace_id == server.trace_id
    # Statements go with their placeholders: the message is nowhere in what was exported.
    for span in spans:
        assert not any(MARKER in str(v) for v in span.attributes.values()), span.name
    assert all(h.get("content-type") == "application/x-protobuf" for h in otlp_receiver.requests)


def test_the_loop_exports_its_step_spans_to_the_endpoint(
    world: World, two_tool_agent: Agent, otlp_receiver: OtlpReceiver, no_dispatch: list[str]
) -> None:
    """The in-process provider with the OTLP exporter exactly as telemetry_setup adds it."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from apps.agents import orchestrator, services

    exporter = OTLPSpanExporter(endpoint=f"{otlp_receiver.url}/v1/traces")
    processor = telemetry.exporter_add(exporter, batch=True)
    try:
        turn = services.turn_enqueue(session=make_session(two_tool_agent), message=MARKER)
        assert orchestrator.turn_execute(turn_id=turn.id) == "completed"
        assert telemetry.force_flush()
        spans = otlp_receiver.wait_for(
            lambda got: any(s.name == "invoke_agent" for s in got), timeout=10
        )
    finally:
        processor.shutdown()  # it stays on the provider, and drops what it is given
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

        telemetry._sampler.inner = ALWAYS_OFF
    root = next(s for s in spans if s.name == "invoke_agent")
    steps = [
        s for s in spans if s.parent_span_id == root.span_id and "warden.step.kind" in s.attributes
    ]
    assert sorted(s.attributes["warden.step.kind"] for s in steps) == sorted(
        ["prompt_build"] + ["model_call"] * 3 + ["policy_check"] * 2 + ["tool_call"] * 2
    )
    chat = next(s for s in steps if s.attributes["warden.step.kind"] == "model_call")
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    nodes = set(ActionNode.objects.filter(turn=turn).values_list("trace_id", flat=True))
    assert nodes == {root.trace_id}
    # The costs line up too: each model call's ledger row carries the trace of its spans.
    usage = UsageRecord.objects.filter(turn_id=turn.id)
    assert usage.count() == 3
    assert set(usage.values_list("trace_id", flat=True)) == {root.trace_id}


@pytest.mark.worker
def test_the_worker_continues_the_trace_of_the_request_that_queued_the_turn(
    world: World, two_tool_agent: Agent, celery_worker: WorkerProcess
) -> None:
    """Celery is instrumented on both sides: the task carries the request's trace context,
    so every event and step the worker writes has the trace id of `turn.accepted`."""
    session = make_session(two_tool_agent, world.alice)
    response = client_for(world.tenant_a).post(
        f"/api/v1/sessions/{session.id}/turns", {"message": "what time is it?"}, format="json"
    )
    assert response.status_code == 202
    turn = wait_for_turn(Turn.objects.get(session=session))
    assert turn.status == "completed", turn.detail
    accepted = SessionEvent.objects.get(turn=turn, type="turn.accepted")
    assert len(accepted.trace_id) == 32 and accepted.trace_id != "0" * 32
    events = SessionEvent.objects.filter(turn=turn)
    assert events.count() > 5
    assert set(events.values_list("trace_id", flat=True)) == {accepted.trace_id}
    nodes = ActionNode.objects.filter(turn=turn)
    assert set(nodes.values_list("trace_id", flat=True)) == {accepted.trace_id}
    usage = UsageRecord.objects.filter(turn_id=turn.id)
    assert usage.exists()
    assert set(usage.values_list("trace_id", flat=True)) == {accepted.trace_id}
    assert os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "") == ""  # nothing was exported
