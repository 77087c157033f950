"""A span per step under the turn's span, through real turns (real database, real policy
gate, scripted model); trace ids on every event and step; nothing of the content on spans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace import SpanKind, StatusCode
from rest_framework.test import APIClient

from apps.agents import orchestrator, services
from apps.agents.models import ActionNode, Agent, SessionEvent, TurnStatus
from apps.core import telemetry
from tests.agents.conftest import make_agent, make_session
from tests.approvals.conftest import ParkTurn, SentTasks
from tests.conftest import World, client_for
from tests.telemetry.conftest import Spans

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]

MARKER = "zebra-7731-private"  # in the user's message and the tool arguments


def trace_hex(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def only(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def attribute_values(span: ReadableSpan) -> list[str]:
    return [str(v) for v in (span.attributes or {}).values()]


def test_a_turn_has_a_span_per_step_under_its_turn_span(
    world: World, two_tool_agent: Agent, spans: Spans
) -> None:
    session = make_session(two_tool_agent, world.alice)
    turn = services.turn_enqueue(session=session, message=f"what time is it? {MARKER}")
    assert orchestrator.turn_execute(turn_id=turn.id) == "completed"

    root = only(spans.named("invoke_agent"))
    attrs = root.attributes or {}
    assert attrs["warden.turn.id"] == str(turn.id)
    assert attrs["warden.session.id"] == attrs["gen_ai.conversation.id"] == str(session.id)
    assert attrs["warden.tenant.id"] == str(world.tenant_a.id)
    assert attrs["gen_ai.agent.name"] == "scripted"
    assert attrs["warden.turn.status"] == "completed"
    assert root.status.status_code != StatusCode.ERROR

    # Every step is a child of the turn's span, in the turn's trace, in the order it ran.
    steps = [s for s in spans.all() if (s.attributes or {}).get("warden.step.kind")]
    assert steps and all(parent_of(s) == root.context.span_id for s in steps)
    assert {trace_hex(s) for s in steps} == {trace_hex(root)}
    kinds = [s.attributes["warden.step.kind"] for s in sorted(steps, key=lambda s: s.start_time)]
    assert kinds == [
        "prompt_build",
        "model_call",
        "policy_check",
        "tool_call",
        "model_call",
        "policy_check",
        "tool_call",
        "model_call",
    ]

    models = spans.of_kind("model_call")
    for span in models:
        a = span.attributes or {}
        assert span.kind == SpanKind.CLIENT and span.name == "chat scripted"
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == "scripted"
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        assert a["warden.turn.id"] == str(turn.id)
    # The turn's totals are the sum of its calls.
    assert attrs["gen_ai.usage.input_tokens"] == sum(
        s.attributes["gen_ai.usage.input_tokens"] for s in models
    )

    tools = spans.of_kind("tool_call")
    assert [s.name for s in tools] == ["execute_tool clock_now", "execute_tool calculator"]
    assert [s.attributes["gen_ai.tool.name"] for s in tools] == ["clock_now", "calculator"]
    assert all(s.attributes["gen_ai.operation.name"] == "execute_tool" for s in tools)
    checks = spans.of_kind("policy_check")
    assert [s.attributes["warden.policy.decision"] for s in checks] == ["allow", "allow"]

    # The database work of a step is a child of that step: psycopg is instrumented.
    tool_ids = {s.context.span_id for s in tools}
    model_ids = {s.context.span_id for s in models}
    queries = [
        s
        for s in spans.all()
        if (s.attributes or {}).get("db.system.name") == "postgresql"
        or (s.attributes or {}).get("db.system") == "postgresql"
    ]
    assert any(parent_of(q) in model_ids for q in queries), "no query under a model call"
    assert any(parent_of(q) in tool_ids | model_ids | {root.context.span_id} for q in queries)

    # Nothing the user wrote, nor any argument or result, is on any span.
    for span in spans.all():
        assert not any(MARKER in value for value in attribute_values(span)), span.name
        assert not any("6 * 7" in value for value in attribute_values(span)), span.name

    # The correlation id: every event and step the turn wrote carries the turn's trace id.
    trace_id = trace_hex(root)
    written = SessionEvent.objects.filter(turn=turn).exclude(type="turn.accepted")
    assert written.count() >= 8
    assert set(written.values_list("trace_id", flat=True)) == {trace_id}
    assert set(ActionNode.objects.filter(turn=turn).values_list("trace_id", flat=True)) == {
        trace_id
    }
    # ... and the steps API says so, to look the trace up in the tracing backend.
    steps_api = client_for(world.tenant_a).get(f"/api/v1/turns/{turn.id}/steps")
    assert steps_api.status_code == 200
    assert {s["trace_id"] for s in steps_api.json()["results"]} == {trace_id}


def test_events_queued_in_a_span_keep_its_trace_id(world: World, spans: Spans) -> None:
    """TurnWrites queues events and writes them with the next write that cannot wait: an
    event stores the trace it was made in, not the one that happened to write it."""
    from apps.agents.adapters import TurnWrites

    agent = make_agent(world.tenant_a, [{"final": "hi"}], slug="queued")
    session = make_session(agent)
    turn = services.turn_enqueue(session=session, message="hello")
    writes = TurnWrites(session, turn)
    with telemetry.tracer.start_as_current_span("first") as first:
        writes.event("step.rationale", {"rationale": "queued in the first span"})
    with telemetry.tracer.start_as_current_span("second") as second:
        writes.check_in()  # writes the queued event
        writes.event("step.rationale", {"rationale": "queued in the second span"})
        writes.check_in()
    rows = list(SessionEvent.objects.filter(turn=turn, type="step.rationale").order_by("id"))
    ids = [format(s.get_span_context().trace_id, "032x") for s in (first, second)]
    assert [r.trace_id for r in rows] == ids and ids[0] != ids[1]


def test_a_failed_tool_and_a_failed_model_call_say_their_type_not_their_message(
    world: World, spans: Spans
) -> None:
    script = [
        {"tool": "calculator", "arguments": {"expression": f"1/0 + {MARKER}"}},
        {"error": "timeout"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["calculator"], slug="broken")
    turn = services.turn_enqueue(session=make_session(agent), message="divide")
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.outcome == "provider_error"

    tool = only(spans.of_kind("tool_call"))
    assert tool.status.status_code == StatusCode.ERROR
    assert tool.attributes["error.type"] == "tool_error"
    assert not tool.status.description
    failed_model = [s for s in spans.of_kind("model_call") if s.attributes.get("error.type")]
    assert [s.attributes["error.type"] for s in failed_model] == ["provider_error"]
    root = only(spans.named("invoke_agent"))
    assert root.attributes["error.type"] == "provider_error"
    assert root.attributes["warden.turn.status"] == "failed"
    for span in spans.all():
        assert not any(MARKER in value for value in attribute_values(span)), span.name
        assert not span.events, (span.name, span.events)  # no recorded exception


def test_a_denied_call_has_its_policy_span_and_no_tool_span(
    world: World, spans: Spans, tmp_path: Path
) -> None:
    from tests.policies.test_gate import DENY, add_policy

    add_policy(world.tenant_a, "no-append", DENY, tool_name="append_line")
    script = [
        {"tool": "append_line", "arguments": {"path": str(tmp_path / "x"), "text": MARKER}},
        {"final": "ok"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["append_line"], slug="denied")
    turn = services.turn_enqueue(session=make_session(agent), message="write")
    orchestrator.turn_execute(turn_id=turn.id)
    assert [s.attributes["warden.policy.decision"] for s in spans.of_kind("policy_check")] == [
        "deny"
    ]
    assert spans.of_kind("tool_call") == []
    policy_node = ActionNode.objects.get(turn=turn, kind="policy")
    assert policy_node.trace_id == trace_hex(only(spans.named("invoke_agent")))


def test_an_approval_wait_is_a_span_from_the_park_to_the_decision(
    world: World,
    park_turn: ParkTurn,
    sent: SentTasks,
    dave_client: APIClient,
    spans: Spans,
    no_dispatch: list[str],
) -> None:
    parked = park_turn(text="approved line")
    first_run = only(spans.named("invoke_agent"))
    assert first_run.attributes["warden.turn.status"] == "waiting_approval"
    assert spans.of_kind("approval_wait") == []  # nobody decided yet
    spans.exporter.clear()

    response = dave_client.post(
        f"/api/v1/approvals/{parked.approval.id}/approve", {"rationale": "fine"}, format="json"
    )
    assert response.status_code == 200
    sent.run("agents.approval_decided")
    assert orchestrator.turn_execute(turn_id=parked.turn.id) == "completed"

    root = only(spans.named("invoke_agent"))
    wait = only(spans.of_kind("approval_wait"))
    assert parent_of(wait) == root.context.span_id
    assert wait.attributes["warden.approval.approved"] is True
    assert wait.attributes["gen_ai.tool.name"] == "guarded_append"
    node = ActionNode.objects.get(turn=parked.turn, kind="tool_call")
    # It starts when the call was parked, and ends when the resumed run applied the decision.
    assert wait.start_time == int(node.created_at.timestamp() * 1e9)
    assert wait.end_time is not None and wait.end_time > first_run.end_time
    # The node was finished by the second run: it carries that run's trace.
    assert node.trace_id == trace_hex(root) != trace_hex(first_run)


def test_the_accepted_event_carries_the_trace_of_the_request(
    world: World, two_tool_agent: Agent, spans: Spans
) -> None:
    """Django is instrumented: POST /turns is a server span, and the event it stores is in
    its trace (the Celery task it enqueues continues that trace: test_worker.py)."""
    session = make_session(two_tool_agent, world.alice)
    client = client_for(world.tenant_a)
    response = client.post(
        f"/api/v1/sessions/{session.id}/turns", {"message": MARKER}, format="json"
    )
    assert response.status_code == 202, response.json()
    server = only([s for s in spans.all() if s.kind == SpanKind.SERVER])
    assert "turns" in server.name
    accepted = SessionEvent.objects.get(session=session, type="turn.accepted")
    assert accepted.trace_id == trace_hex(server)
    for span in spans.all():
        assert not any(MARKER in value for value in attribute_values(span)), span.name


def test_probes_and_scrapes_are_not_traced(world: World, spans: Spans) -> None:
    client = APIClient()
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert [s for s in spans.all() if s.kind == SpanKind.SERVER] == []


def test_without_an_exporter_spans_record_nothing_but_trace_ids_still_flow(
    world: World, two_tool_agent: Agent
) -> None:
    turn = services.turn_enqueue(session=make_session(two_tool_agent), message="time?")
    with telemetry.tracer.start_as_current_span("outer") as outer:
        assert not outer.is_recording()
        orchestrator.turn_execute(turn_id=turn.id)
    expected = format(outer.get_span_context().trace_id, "032x")
    assert expected != "0" * 32
    rows: Any = SessionEvent.objects.filter(turn=turn).exclude(type="turn.accepted")
    assert set(rows.values_list("trace_id", flat=True)) == {expected}
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED


def test_a_credential_in_a_query_string_never_reaches_a_span(world: World, spans: Spans) -> None:
    """Keys belong in headers, but a client may put one in a URL: the request span keeps the
    path, not the query."""
    client = client_for(world.tenant_a)
    response = client.get(f"/api/v1/agents?api_key={MARKER}&page_size=5")
    assert response.status_code == 200
    server = only([s for s in spans.all() if s.kind == SpanKind.SERVER])
    values = attribute_values(server)
    assert any("/api/v1/agents" in v for v in values), server.attributes
    for span in spans.all():
        assert not any(MARKER in value for value in attribute_values(span)), span.attributes


def test_an_exception_recorded_by_a_library_leaves_with_its_type_only(spans: Spans) -> None:
    """Django and Celery record a failing request's or task's exception, message and stack
    included: what is exported keeps the type."""
    with telemetry.tracer.start_as_current_span("failing") as span:
        span.record_exception(ValueError(f"the prompt was {MARKER}"))
        span.set_status(StatusCode.ERROR, f"ValueError: {MARKER}")
    exported = only(spans.named("failing"))
    assert exported.status.status_code == StatusCode.ERROR
    assert not exported.status.description
    [event] = exported.events
    assert event.name == "exception" and event.attributes["exception.type"] == "ValueError"
    assert MARKER not in repr(dict(event.attributes))


def test_a_memory_search_is_a_retrieval_span_under_its_tool_call(
    world: World, spans: Spans
) -> None:
    from apps.memory import services as memory
    from tests.memory.test_tool import memory_agent, run

    memory.document_ingest(
        tenant=world.tenant_a, title="Parking", text="Visitors park in the north garage."
    )
    turn = run(memory_agent(world), f"where do visitors park {MARKER}")
    assert turn.status == TurnStatus.COMPLETED, turn.detail

    retrieval = only(spans.of_kind("retrieval"))
    tool = only(spans.of_kind("tool_call"))
    assert parent_of(retrieval) == tool.context.span_id
    assert trace_hex(retrieval) == trace_hex(tool)
    attrs = retrieval.attributes or {}
    assert attrs["warden.memory.hits"] == 1
    assert attrs["warden.tenant.id"] == str(world.tenant_a.id)
    assert MARKER not in " ".join(attribute_values(retrieval))  # the query stays off spans


def test_no_pii_kind_reaches_a_span(world: World, spans: Spans, tmp_path: Path) -> None:
    """Spans carry ids, names, counts and decisions only: a turn full of PII and credentials
    (in the message, the tool's arguments, the model's reply) leaves none of it on a span."""
    from tests.redaction.test_events import ANT_KEY, CARD, EMAIL, GH_TOKEN, IBAN, PHONE, SSN

    jwt_token = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    )
    pem = "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBgkqhkiG9w0BAQEFAASC-----END PRIVATE KEY-----"
    raw = (EMAIL, CARD, PHONE, IBAN, GH_TOKEN, ANT_KEY, SSN, jwt_token, pem, "Bearer abc.def")
    script = [
        {
            "tool": "append_line",
            "arguments": {"path": str(tmp_path / "out.txt"), "text": "${last_user_message}"},
            "say": f"Saving {EMAIL} with key {ANT_KEY}; SSN {SSN}; {jwt_token}",
        },
        {"final": "Saved ${last_user_message}"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["append_line"], slug="pii-spans")
    session = make_session(agent, world.alice)
    message = f"{EMAIL} {CARD} {PHONE} {IBAN} {GH_TOKEN} {pem} Bearer abc.def"
    turn = services.turn_enqueue(session=session, message=message, requested_by=world.alice)
    assert orchestrator.turn_execute(turn_id=turn.id) == "completed"

    recorded = spans.all()
    assert len(recorded) > 5
    text = " ".join(
        [" ".join(attribute_values(s)) for s in recorded]
        + [str(e.attributes) for s in recorded for e in s.events]
        + [s.name for s in recorded]
    )
    for value in raw:
        assert value not in text, value


def test_a_pipelined_batch_is_one_span_for_its_one_round_trip(world: World, spans: Spans) -> None:
    from apps.core import batch
    from apps.tenants.models import Tenant

    tenants = Tenant.objects.filter(id=world.tenant_a.id)
    batch.execute([batch.update(tenants, name=f"renamed {n}") for n in range(3)])
    Tenant.objects.filter(id=world.tenant_b.id).update(name="alone")

    def statement(span: ReadableSpan) -> str:
        attributes = span.attributes or {}
        return str(attributes.get("db.query.text") or attributes.get("db.statement") or "")

    database = [s for s in spans.all() if 'UPDATE "tenants_tenant"' in statement(s)]
    pipelined = only([s for s in database if s.name == "BATCH"])
    assert (pipelined.attributes or {})["db.operation.batch.size"] == 3
    assert statement(pipelined).count('UPDATE "tenants_tenant"') == 3
    assert pipelined.kind == SpanKind.CLIENT
    assert "renamed" not in statement(pipelined)  # placeholders, never the values
    # The statement on its own keeps its own span; none for the pipelined ones.
    assert [s.name for s in database if s is not pipelined] == ["UPDATE"]


def test_while_nothing_records_statements_make_no_spans(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement's span is a leaf: with no exporter there is nothing to record and no trace
    id to pass on, so none is made (each cost ~20 µs of a turn's ~30 statements). The same
    statements under the `spans` fixture make theirs (the test above)."""
    from opentelemetry.sdk import trace as sdk_trace

    from apps.core import batch
    from apps.tenants.models import Tenant

    started: list[str] = []
    start_span = sdk_trace.Tracer.start_span

    def counted(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        started.append(name)
        return start_span(self, name, *args, **kwargs)

    monkeypatch.setattr(sdk_trace.Tracer, "start_span", counted)
    assert not telemetry.recording()
    tenants = Tenant.objects.filter(id=world.tenant_a.id)
    batch.execute([batch.update(tenants, name=f"renamed {n}") for n in range(3)])
    Tenant.objects.filter(id=world.tenant_b.id).update(name="alone")
    assert Tenant.objects.get(id=world.tenant_b.id).name == "alone"
    assert started == []

    telemetry._sampler.inner = ParentBased(ALWAYS_ON)
    try:
        assert telemetry.recording()
        Tenant.objects.filter(id=world.tenant_b.id).update(name="traced")
    finally:
        telemetry._sampler.inner = ALWAYS_OFF
    assert started == ["UPDATE"]
