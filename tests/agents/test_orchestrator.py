"""The turn runner in-process (no worker): outcomes, the action graph, events, resume."""

from __future__ import annotations

import pytest

from apps.agents import orchestrator, services
from apps.agents.models import ActionNode, Agent, AgentSession, SessionEvent, Turn, TurnStatus
from apps.tenants.models import Tenant
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World
from tests.round_trips import round_trips

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]


def test_two_tool_turn_completes_with_graph_and_events(world: World, two_tool_agent: Agent) -> None:
    session = make_session(two_tool_agent, world.alice)
    turn = services.turn_enqueue(session=session, message="what time is it?")
    assert orchestrator.turn_execute(turn_id=turn.id) == "completed"
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED
    assert turn.outcome == "completed"
    assert "Answer:" in turn.final_answer and "42" in turn.final_answer
    assert turn.attempts == 1

    nodes = list(ActionNode.objects.filter(turn=turn).order_by("position"))
    kinds = [(n.kind, n.status) for n in nodes]
    tool_nodes = [n for n in nodes if n.kind == "tool_call"]
    assert [n.inputs.get("name") or n.inputs.get("tool") for n in tool_nodes] == [
        "clock_now",
        "calculator",
    ], kinds
    assert all(n.status == "completed" for n in tool_nodes)
    # A DAG: every parent is an earlier node of the same turn.
    seen: set[str] = set()
    for node in nodes:
        assert set(node.parents) <= seen, (node.node_id, node.parents)
        seen.add(node.node_id)

    events = list(SessionEvent.objects.filter(session=session).values_list("type", flat=True))
    assert events[0] == "turn.accepted"
    assert events[-1] == "turn.completed"
    assert events.count("tool.call") == 2 and events.count("tool.result") == 2


def test_max_steps_ends_the_turn_clearly(world: World) -> None:
    forever = [{"tool": "calculator", "arguments": {"expression": "1+1"}}] * 10
    agent = make_agent(world.tenant_a, forever, tools=["calculator"], slug="loopy", max_steps=3)
    turn = services.turn_enqueue(session=make_session(agent), message="loop")
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == TurnStatus.FAILED
    assert turn.outcome == "max_steps_exceeded"
    assert ActionNode.objects.filter(turn=turn, kind="tool_call").count() == 3


def test_malformed_output_is_reprompted_then_succeeds(world: World) -> None:
    script = [
        {"tool": "calculator", "raw_arguments": "{not json"},
        {"tool": "calculator", "arguments": {"expression": "2+2"}},
        {"final": "It is ${last_tool_result}"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["calculator"], slug="sloppy")
    session = make_session(agent)
    turn = services.turn_enqueue(session=session, message="2+2?")
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED, turn.detail
    malformed = ActionNode.objects.get(turn=turn, kind="model_call", status="malformed")
    assert malformed.outputs.get("error")
    assert SessionEvent.objects.filter(session=session, type="step.malformed").count() == 1
    # The malformed call was never executed: only the valid one ran.
    assert ActionNode.objects.filter(turn=turn, kind="tool_call").count() == 1


def test_malformed_output_gives_up_after_the_bound(world: World) -> None:
    script = [{"tool": "calculator", "raw_arguments": "{nope"}] * 6
    agent = make_agent(world.tenant_a, script, tools=["calculator"], slug="hopeless")
    turn = services.turn_enqueue(session=make_session(agent), message="2+2?")
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == TurnStatus.FAILED
    assert turn.outcome == "malformed_output"
    assert ActionNode.objects.filter(turn=turn, kind="model_call", status="malformed").count() == 3
    assert not ActionNode.objects.filter(turn=turn, kind="tool_call").exists()


def test_provider_failure_fails_the_turn_and_the_session_stays_usable(world: World) -> None:
    agent = make_agent(world.tenant_a, [{"error": "timeout"}], slug="flaky")
    session = make_session(agent)
    first = services.turn_enqueue(session=session, message="hello")
    orchestrator.turn_execute(turn_id=first.id)
    first.refresh_from_db()
    assert first.status == TurnStatus.FAILED
    assert first.outcome == "provider_error"
    failed = SessionEvent.objects.get(session=session, turn=first, type="turn.failed")
    assert failed.payload["reason"] == "provider_error"

    endpoint = agent.allowed_endpoints.get()
    from apps.llm.services import endpoint_save

    endpoint_save(
        tenant=world.tenant_a, endpoint=endpoint, options={"script": [{"final": "recovered"}]}
    )
    second = services.turn_enqueue(session=session, message="again")
    orchestrator.turn_execute(turn_id=second.id)
    second.refresh_from_db()
    assert second.status == TurnStatus.COMPLETED
    assert second.final_answer == "recovered"


def test_later_turn_waits_for_earlier_one(world: World, two_tool_agent: Agent) -> None:
    session = make_session(two_tool_agent)
    first = services.turn_enqueue(session=session, message="one")
    second = services.turn_enqueue(session=session, message="two")
    assert orchestrator.turn_execute(turn_id=second.id) == "blocked_by_earlier_turn"
    second.refresh_from_db()
    assert second.status == TurnStatus.QUEUED
    orchestrator.turn_execute(turn_id=first.id)
    orchestrator.turn_execute(turn_id=second.id)
    second.refresh_from_db()
    assert second.status == TurnStatus.COMPLETED
    assert second.seq == first.seq + 1


def test_a_blocked_turn_dispatches_the_earlier_one_that_found_the_lock_taken(
    world: World, two_tool_agent: Agent, no_dispatch: list[str]
) -> None:
    """Two turns of an idle session dispatched together: the first one's task meets the lock
    held by the second one's (which only finds it is blocked) and returns session_busy. The
    second must dispatch the first again, or it waits for the recovery sweep."""
    session = make_session(two_tool_agent)
    first = services.turn_enqueue(session=session, message="one")
    second = services.turn_enqueue(session=session, message="two")
    no_dispatch.clear()
    with orchestrator.session_lock(session.id) as held:
        assert held  # the second turn's task, between taking the lock and finding it blocked
        assert orchestrator.turn_execute(turn_id=first.id) == "session_busy"
    assert no_dispatch == []
    assert orchestrator.turn_execute(turn_id=second.id) == "blocked_by_earlier_turn"
    assert no_dispatch == [str(first.id)]


def test_session_lock_excludes_a_second_runner(world: World, two_tool_agent: Agent) -> None:
    session = make_session(two_tool_agent)
    turn = services.turn_enqueue(session=session, message="one")
    with orchestrator.session_lock(session.id) as held:
        assert held
        assert orchestrator.turn_execute(turn_id=turn.id) == "session_busy"
    assert orchestrator.turn_execute(turn_id=turn.id) == "completed"


def test_a_task_with_its_session_runs_the_turn_and_a_foreign_session_finds_nothing(
    world: World, two_tool_agent: Agent
) -> None:
    # The dispatched task carries the session: its lock is taken before the turn is read.
    # A task naming another session (another tenant's, even) must not run the turn under
    # that session's lock.
    turn = services.turn_enqueue(session=make_session(two_tool_agent), message="now?")
    other_agent = make_agent(world.tenant_b, [{"final": "hi"}], slug="other-b")
    foreign = make_session(other_agent)
    assert orchestrator.turn_execute(turn_id=turn.id, session_id=foreign.id) == "missing"
    turn.refresh_from_db()
    assert turn.status == TurnStatus.QUEUED and turn.attempts == 0

    assert orchestrator.turn_execute(turn_id=turn.id, session_id=turn.session_id) == "completed"
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED
    assert orchestrator.turn_execute(turn_id=turn.id, session_id=turn.session_id) == (
        "already_finished"
    )


def test_an_agents_allowed_endpoints_are_the_only_ones_its_turn_may_call(world: World) -> None:
    from apps.llm.services import endpoint_save

    agent = make_agent(world.tenant_a, [{"final": "hi"}], slug="narrow")
    spare = endpoint_save(
        tenant=world.tenant_a, name="spare", provider="scripted", model="s", tier="small"
    )
    turn = services.turn_enqueue(session=make_session(agent), message="hi")
    locked = orchestrator._turn_locked(turn.id, turn.session_id)
    assert locked is not None
    allowed = sorted(e.name for e in agent.allowed_endpoints.all())
    assert sorted(locked.allowed_endpoint_names) == allowed  # type: ignore[attr-defined]
    assert spare.name not in allowed


def test_the_locked_read_builds_the_same_rows_the_orm_reads(world: World) -> None:
    # The turn-start read is written once as SQL (apps/core/joined_read.py): every field of
    # the four models must come back as the ORM loads it (JSON decoded, datetimes aware).
    agent = make_agent(world.tenant_a, [{"final": "hi"}], slug="same-rows", max_steps=4)
    session = make_session(agent)
    first = services.turn_enqueue(session=session, message="one")
    second = services.turn_enqueue(session=session, message="two")

    locked = orchestrator._turn_locked(second.id, session.id)
    assert locked is not None
    pairs = [
        (locked, Turn.objects.get(id=second.id)),
        (locked.session, AgentSession.objects.get(id=session.id)),
        (locked.session.agent, Agent.objects.get(id=agent.id)),
        (locked.tenant, Tenant.objects.get(id=world.tenant_a.id)),
    ]
    for built, loaded in pairs:
        for field in type(loaded)._meta.concrete_fields:
            assert getattr(built, field.attname) == getattr(loaded, field.attname), field.name
        assert built._state.adding is False and built._state.db == "default"
    assert locked.session.agent.allowed_tools == agent.allowed_tools  # JSON, decoded
    assert locked.blocked is True  # type: ignore[attr-defined]  # the first is still queued
    assert orchestrator._turn_locked(first.id, session.id).blocked is False  # type: ignore[union-attr]
    assert orchestrator._turn_locked(second.id, first.id) is None  # not its session


def test_the_locked_read_marks_a_turn_that_runs_now_running_and_no_other(world: World) -> None:
    agent = make_agent(world.tenant_a, [{"final": "hi"}], slug="marks-running")
    session = make_session(agent)
    first = services.turn_enqueue(session=session, message="one")
    second = services.turn_enqueue(session=session, message="two")
    untouched = Turn.objects.get(id=second.id)

    # Behind an unfinished earlier turn: read, not marked.
    blocked = orchestrator._turn_locked(second.id, session.id)
    assert blocked is not None and blocked.started is False  # type: ignore[attr-defined]
    stored = Turn.objects.get(id=second.id)
    assert (stored.status, stored.attempts, stored.heartbeat_at) == (
        TurnStatus.QUEUED,
        0,
        untouched.heartbeat_at,
    )

    # Its session's next turn: marked running in the same statement, counted once, and the
    # instance shows the row as it now stands.
    runs = orchestrator._turn_locked(first.id, session.id)
    assert runs is not None and runs.started is True  # type: ignore[attr-defined]
    stored = Turn.objects.get(id=first.id)
    assert stored.status == runs.status == TurnStatus.RUNNING
    assert stored.attempts == runs.attempts == 1
    assert stored.heartbeat_at == runs.heartbeat_at and stored.started_at == runs.started_at
    assert stored.started_at is not None

    # Waiting or finished: read as they are, not marked.
    for status in (TurnStatus.WAITING, TurnStatus.COMPLETED):
        Turn.objects.filter(id=first.id).update(status=status)
        read = orchestrator._turn_locked(first.id, session.id)
        assert read is not None and read.started is False  # type: ignore[attr-defined]
        assert Turn.objects.get(id=first.id).attempts == 1


def test_the_turns_start_reads_its_catalog_as_the_selectors_do(world: World) -> None:
    # The router's endpoints, the agent's tools (with their servers) and its policies come
    # with the turn's own read, in one round trip: the same rows the selectors read, and
    # none of another tenant's.
    from apps.llm.services import endpoint_save
    from apps.policies.models import PolicyMode
    from apps.policies.selectors import policies_for_agent
    from apps.policies.services import policy_create
    from apps.tools.models import McpServer, Tool
    from apps.tools.selectors import tools_by_name

    source = 'package warden\n\nimport rego.v1\n\ndecision := {"allow": true}\n'
    for tenant in (world.tenant_a, world.tenant_b):
        endpoint_save(tenant=tenant, name="spare", provider="scripted", model="s", tier="large")
        server = McpServer.objects.create(
            tenant=tenant, name="files", transport="stdio", template="git"
        )
        Tool.objects.create(
            tenant=tenant, name="read_file", remote_name="read_file", source="mcp", server=server
        )
        for name, mode, agent_slug in (
            ("mine", PolicyMode.ENFORCE, "catalogued"),
            ("others", PolicyMode.ENFORCE, "someone-else"),
            ("off", PolicyMode.DISABLED, ""),
            ("watching", PolicyMode.REPORT_ONLY, ""),
        ):
            policy_create(tenant=tenant, name=name, source=source, mode=mode, agent_slug=agent_slug)
    agent = make_agent(
        world.tenant_a,
        [{"final": "hi"}],
        slug="catalogued",
        tools=["read_file", "clock_now", "calculator"],
    )
    endpoint = agent.allowed_endpoints.get()
    endpoint.is_active = False  # an inactive endpoint is no router's
    endpoint.save()
    turn = services.turn_enqueue(session=make_session(agent), message="hi")

    locked = orchestrator._turn_locked(turn.id, turn.session_id)
    assert locked is not None
    catalog = locked.catalog  # type: ignore[attr-defined]

    from apps.llm.models import ModelEndpoint

    endpoints = ModelEndpoint.objects.filter(tenant=world.tenant_a, is_active=True)
    assert [e.id for e in catalog.endpoints] == [
        e.id for e in endpoints.order_by("priority", "name")
    ]
    assert endpoint.id not in {e.id for e in catalog.endpoints}
    expected_tools = tools_by_name(tenant_id=world.tenant_a.id, names=agent.allowed_tools)
    assert set(catalog.tools) == set(expected_tools) and "read_file" in catalog.tools
    for name, tool in catalog.tools.items():
        loaded = expected_tools[name]
        for field in Tool._meta.concrete_fields:
            assert getattr(tool, field.attname) == getattr(loaded, field.attname), field.name
        assert (tool.server and tool.server.id) == (loaded.server and loaded.server.id)
        assert tool.tenant_id == world.tenant_a.id
    expected = policies_for_agent(tenant_id=world.tenant_a.id, agent_slug="catalogued")
    assert [p.id for p in catalog.policies] == [p.id for p in expected]
    assert {p.name for p in catalog.policies} >= {"mine", "watching"}
    assert not {p.name for p in catalog.policies} & {"others", "off"}
    for policy, loaded in zip(catalog.policies, expected, strict=True):
        assert policy.current_version.source == loaded.current_version.source
        assert policy.tenant_id == world.tenant_a.id


def test_a_turn_reads_nothing_of_its_catalog_on_its_own(
    world: World, two_tool_agent: Agent
) -> None:
    turn = services.turn_enqueue(session=make_session(two_tool_agent), message="now?")
    with round_trips() as queries:
        assert orchestrator.turn_execute(turn_id=turn.id, session_id=turn.session_id) == (
            "completed"
        )
    catalog = [
        sql
        for sql in queries
        if any(f'FROM "{table}"' in sql for table in ("llm_modelendpoint", "tools_tool"))
        or 'FROM "policies_policy"' in sql
    ]
    # One query: the turn's own read, with its start (the UPDATE) and the three catalog reads.
    assert len(catalog) == 1 and catalog[0].lstrip().startswith("WITH started AS")


def test_resume_skips_finished_steps(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ledger = tmp_path / "ledger.txt"
    script = [
        {"tool": "append_line", "arguments": {"path": str(ledger), "text": "paid"}},
        {"final": "done: ${last_tool_result}"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["append_line"], slug="payer")
    turn = services.turn_enqueue(session=make_session(agent), message="pay")
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED
    # Pretend the worker died after the tool but before the outcome was written:
    type(turn).objects.filter(id=turn.id).update(status=TurnStatus.RUNNING, final_answer="")
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED
    assert turn.attempts == 2
    assert ledger.read_text().splitlines() == ["paid"]


def test_interrupted_non_idempotent_tool_fails_visibly(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ledger = tmp_path / "ledger.txt"
    script = [
        {"tool": "append_line", "arguments": {"path": str(ledger), "text": "paid"}},
        {"final": "done"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["append_line"], slug="payer2")
    turn = services.turn_enqueue(session=make_session(agent), message="pay")
    orchestrator.turn_execute(turn_id=turn.id)
    # Simulate a crash during the tool call: the node says "started", never finished.
    node = ActionNode.objects.get(turn=turn, kind="tool_call")
    ActionNode.objects.filter(id=node.id).update(status="started", outputs={})
    ActionNode.objects.filter(turn=turn, position__gt=node.position).delete()
    type(turn).objects.filter(id=turn.id).update(status=TurnStatus.RUNNING)
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == TurnStatus.FAILED
    assert turn.outcome == "non_idempotent_tool_interrupted"
    assert ledger.read_text().splitlines() == ["paid"]


def test_cancelled_queued_turn_never_runs(world: World, two_tool_agent: Agent) -> None:
    session = make_session(two_tool_agent)
    turn = services.turn_enqueue(session=session, message="one")
    services.turn_cancel(turn=turn)
    assert orchestrator.turn_execute(turn_id=turn.id) == "already_finished"
    assert not ActionNode.objects.filter(turn=turn).exists()
    assert SessionEvent.objects.filter(turn=turn, type="turn.cancelled").exists()


def test_confidential_session_refuses_endpoints_not_marked_for_it(world: World) -> None:
    from apps.llm.services import endpoint_save

    endpoint = endpoint_save(
        tenant=world.tenant_a,
        name="public-only",
        provider="scripted",
        model="s",
        allowed_sensitivities=["public", "internal"],
        options={"script": [{"final": "leak"}]},
    )
    agent = services.agent_save(
        tenant=world.tenant_a, name="C", slug="conf", allowed_endpoints=[endpoint]
    )
    session = services.session_create(
        tenant=world.tenant_a, agent=agent, user=None, data_sensitivity="confidential"
    )
    turn = services.turn_enqueue(session=session, message="secret stuff")
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == TurnStatus.FAILED
    assert turn.outcome == "provider_error"
    assert "confidential" in turn.detail
    assert turn.final_answer == ""


def test_repeated_malformed_output_escalates_to_the_large_tier(world: World) -> None:
    from apps.llm.services import endpoint_save

    small = endpoint_save(
        tenant=world.tenant_a,
        name="small-sloppy",
        provider="scripted",
        model="s",
        tier="small",
        options={"script": [{"tool": "calculator", "raw_arguments": "{bad"}] * 4},
    )
    large = endpoint_save(
        tenant=world.tenant_a,
        name="large-careful",
        provider="scripted",
        model="l",
        tier="large",
        options={"script": [{"final": "the large model answered"}] * 4},
    )
    agent = services.agent_save(
        tenant=world.tenant_a,
        name="E",
        slug="escalate",
        model_tier="small",
        allowed_tools=["calculator"],
        allowed_endpoints=[small, large],
    )
    session = make_session(agent)
    turn = services.turn_enqueue(session=session, message="2+2?")
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED, turn.detail
    assert turn.final_answer == "the large model answered"
    called = [
        e.payload["endpoint"]
        for e in SessionEvent.objects.filter(session=session, type="model.called").order_by("id")
    ]
    assert called == ["small-sloppy", "small-sloppy", "large-careful"]


def test_recovery_redispatches_orphaned_and_lost_turns_only(
    world: World, two_tool_agent: Agent, no_dispatch: list[str]
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from apps.agents.models import Turn

    session = make_session(two_tool_agent)
    orphaned = services.turn_enqueue(session=make_session(two_tool_agent), message="lost worker")
    lost = services.turn_enqueue(session=session, message="lost dispatch")
    fresh = services.turn_enqueue(session=make_session(two_tool_agent), message="just queued")
    long_ago = timezone.now() - timedelta(hours=1)
    Turn.objects.filter(id=orphaned.id).update(status=TurnStatus.RUNNING, heartbeat_at=long_ago)
    Turn.objects.filter(id=lost.id).update(created_at=long_ago)
    no_dispatch.clear()

    assert orchestrator.turns_recover() == 2
    assert sorted(no_dispatch) == sorted([str(orphaned.id), str(lost.id)])
    assert str(fresh.id) not in no_dispatch
    # The orphaned turn resumes when its task runs again.
    assert orchestrator.turn_execute(turn_id=orphaned.id) == "completed"
