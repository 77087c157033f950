"""How a turn writes: events ride with the next checkpoint or check-in, never later."""

from __future__ import annotations

from typing import Any

import pytest

from apps.agents import adapters, orchestrator, services
from apps.agents.budgeting import builtin_caps
from apps.agents.models import ActionNode, SessionEvent, Turn, TurnStatus
from apps.budgets.services import ledger as budget_ledger
from apps.core import batch
from apps.policies import services as policy_services
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World
from tests.round_trips import round_trips

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]


def _run_recording_queries(turn: Any, *, params: bool = False) -> list[str]:
    """Run the turn in-process, with what its dispatched task carries; what it sent, one entry
    per round trip (tests/round_trips.py), with the parameters when asked."""
    with round_trips(params=params) as trips:
        result = orchestrator.turn_execute(
            turn_id=turn.id, session_id=turn.session_id, tenant_id=turn.tenant_id
        )
    assert result == "completed"
    return trips


SCRIPT = [
    {"tool": "events_so_far", "arguments": {}, "say": "Looking."},
    {"tool": "events_so_far", "arguments": {}, "say": "Looking again."},
    {"final": "done"},
]


def test_every_event_is_stored_before_the_call_that_follows_it(world: World) -> None:
    agent = make_agent(world.tenant_a, SCRIPT, tools=["events_so_far"], slug="watcher")
    turn = services.turn_enqueue(session=make_session(agent), message="look")

    assert orchestrator.turn_execute(turn_id=turn.id) == "completed"

    log = list(SessionEvent.objects.filter(turn=turn).order_by("id").values_list("type", flat=True))
    calls = [i for i, kind in enumerate(log) if kind == "tool.call"]
    assert len(calls) == 2
    nodes = ActionNode.objects.filter(turn=turn, kind="tool_call").order_by("position")
    seen = [node.outputs["output"]["events"] for node in nodes]
    # What each tool saw is exactly the log up to its own tool.call: everything emitted
    # before the call was durable when it ran, and nothing later had been written.
    assert seen == [log[: calls[0] + 1], log[: calls[1] + 1]]
    assert turn.__class__.objects.get(id=turn.id).status == TurnStatus.COMPLETED


def test_a_tool_call_is_committed_as_started_before_the_tool_runs(world: World) -> None:
    # The "started" mark rides with the check-in before the call, and the previous call's
    # observation with the check-in before the model call that reads it: both committed
    # (seen from another connection) by the time the tool runs.
    agent = make_agent(world.tenant_a, SCRIPT, tools=["events_so_far"], slug="watcher5")
    turn = services.turn_enqueue(session=make_session(agent), message="look")

    assert orchestrator.turn_execute(turn_id=turn.id) == "completed"

    calls = ActionNode.objects.filter(turn=turn, kind="tool_call").order_by("position")
    first, second = (node.outputs["output"]["nodes"] for node in calls)
    assert first[calls[0].node_id] == "started"
    assert second[calls[1].node_id] == "started"
    assert second[calls[0].node_id] == "completed"
    assert second[f"{calls[0].node_id}:obs"] == "completed"
    assert f"{calls[1].node_id}:obs" not in second
    # and everything ends up stored: two observations, each after its call.
    observations = ActionNode.objects.filter(turn=turn, kind="observation").order_by("position")
    assert [node.node_id for node in observations] == [f"{c.node_id}:obs" for c in calls]


def test_a_tool_calls_writes_ride_with_check_ins_and_the_next_model_call_needs_none(
    world: World,
) -> None:
    agent = make_agent(world.tenant_a, SCRIPT, tools=["events_so_far"], slug="watcher6")
    turn = services.turn_enqueue(session=make_session(agent), message="look")
    queries = _run_recording_queries(turn)

    check_in = 'UPDATE "agents_turn" SET "heartbeat_at"'
    node_insert = f'INSERT INTO "{ActionNode._meta.db_table}"'
    node_update = f'UPDATE "{ActionNode._meta.db_table}"'
    check_ins = [sql for sql in queries if check_in in sql]
    # Per tool call one before it (with its "started" node) and one with its result (its
    # observation, then its node): the model calls after a tool call check in with that
    # result, in no round trip of their own; the first model call, with the statement that
    # started the turn (it set the heartbeat, and stored `turn.started`).
    assert len(check_ins) == 4
    for before, result in (check_ins[0:2], check_ins[2:4]):
        assert node_insert in before and node_update not in before
        # observation, then the call's finished node, then the check-in: one transaction
        assert before.index(node_insert) < before.index(check_in)
        assert result.index(node_insert) < result.index(node_update) < result.index(check_in)
    # The query after a tool call's result writes the next model call's node: nothing between.
    for result in check_ins[1::2]:
        following = queries[queries.index(result) + 1]
        assert "usagerecord" in following and node_insert in following, following[:200]
    # From the start to the first model call's node, the turn writes nothing: `turn.started`
    # went with the start (reads of settings cached per process may come between).
    event_insert = f'INSERT INTO "{SessionEvent._meta.db_table}"'
    [start] = [i for i, sql in enumerate(queries) if "WITH started AS" in sql]
    assert event_insert in queries[start]
    first_node = next(i for i in range(start, len(queries)) if node_insert in queries[i])
    assert queries[first_node] == check_ins[0]
    assert all(sql.lstrip().startswith("SELECT") for sql in queries[start + 1 : first_node])


def test_the_answers_node_and_ledger_row_commit_with_the_turns_outcome(world: World) -> None:
    agent = make_agent(world.tenant_a, SCRIPT, tools=["events_so_far"], slug="watcher7")
    turn = services.turn_enqueue(session=make_session(agent), message="look")
    queries = _run_recording_queries(turn, params=True)

    finishing = [sql for sql in queries if 'UPDATE "agents_turn" SET "status"' in sql][-1]
    final_node = f"{turn.id}:2:model:0"
    # One round trip, one transaction: the answering call's ledger row and its node, the
    # completed event, and the turn's new status.
    statements, values = finishing.split(" -- ", 1)
    assert "INSERT INTO budgets_usagerecord" in statements
    assert f'INSERT INTO "{ActionNode._meta.db_table}"' in statements
    assert final_node in values and "turn.completed" in values
    assert sum(final_node in sql for sql in queries) == 1  # not written before, on its own
    node = ActionNode.objects.get(turn=turn, node_id=final_node)
    assert node.outputs["final_answer"] == "done" and node.status == "completed"


HELPER_POLICY = """\
package warden

import rego.v1

decision := {"allow": true, "reasons": ["evaluated in a helper process"]}
"""


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: nothing below the loop catches it."""


def _first_model_node(turn: Any) -> str:
    return f"{turn.id}:0:model:0"


def test_a_model_call_decided_in_process_commits_with_its_first_tool_calls_write(
    world: World,
) -> None:
    # The tenant's policy is the shipped default, evaluated in the worker's thread: the model
    # call that asks for the tool goes with the check-in before that tool (one round trip),
    # and is committed — seen from another connection — by the time the tool runs.
    agent = make_agent(world.tenant_a, SCRIPT, tools=["events_so_far"], slug="local-gate")
    turn = services.turn_enqueue(session=make_session(agent), message="look")
    queries = _run_recording_queries(turn, params=True)

    model_node, call_node = _first_model_node(turn), f"{turn.id}:0:0"
    carrying = [sql for sql in queries if model_node in sql]
    assert len(carrying) == 1
    [(statements, values)] = [sql.split(" -- ", 1) for sql in carrying]
    assert 'UPDATE "agents_turn" SET "heartbeat_at"' in statements  # the check-in
    assert "INSERT INTO budgets_usagerecord" in statements and call_node in values
    assert f"{call_node}:policy" in values
    first = ActionNode.objects.get(turn=turn, node_id=call_node).outputs["output"]["nodes"]
    assert first[model_node] == "completed" and first[call_node] == "started"


def test_a_model_call_decided_out_of_process_is_committed_before_the_decision(
    world: World,
) -> None:
    policy_services.policy_create(tenant=world.tenant_a, name="helper", source=HELPER_POLICY)
    agent = make_agent(world.tenant_a, SCRIPT, tools=["events_so_far"], slug="helper-gate")
    turn = services.turn_enqueue(session=make_session(agent), message="look")
    queries = _run_recording_queries(turn, params=True)

    model_node, call_node = _first_model_node(turn), f"{turn.id}:0:0"
    [written] = [i for i, sql in enumerate(queries) if model_node in sql]
    [decided] = [i for i, sql in enumerate(queries) if f"{call_node}:policy" in sql]
    assert written < decided
    assert 'SET "heartbeat_at"' not in queries[written].split(" -- ", 1)[0]


def test_a_worker_dying_while_the_policy_decides_in_process_asks_the_model_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one window the in-process decision widens: the model's answer is not stored yet.
    It costs what a death while the answer was being written costs: the model is asked
    again. No tool has run, and the resumed turn runs each one once."""
    agent = make_agent(world.tenant_a, SCRIPT, tools=["events_so_far"], slug="dies-deciding")
    turn = services.turn_enqueue(session=make_session(agent), message="look")
    real = policy_services.decision_make

    def dies(**kwargs: Any) -> Any:
        raise WorkerKilled()

    monkeypatch.setattr(policy_services, "decision_make", dies)
    with pytest.raises(WorkerKilled):
        orchestrator.turn_execute(turn_id=turn.id)
    assert not ActionNode.objects.filter(turn=turn).exists()
    monkeypatch.setattr(policy_services, "decision_make", real)

    assert orchestrator.turn_execute(turn_id=turn.id) == "completed"  # the redelivered task
    nodes = ActionNode.objects.filter(turn=turn)
    assert sorted(n.node_id for n in nodes if n.kind == "model_call") == [
        f"{turn.id}:{step}:model:0" for step in range(3)
    ]
    calls = [n for n in nodes if n.kind == "tool_call"]
    assert [(n.status, n.outputs["output"]["events"].count("tool.call")) for n in calls] == [
        ("completed", 1),
        ("completed", 2),
    ]


def _execute_as_dispatched(turn: Any, *, tenant_id: Any = None) -> str:
    return orchestrator.turn_execute(
        turn_id=turn.id, session_id=turn.session_id, tenant_id=tenant_id or turn.tenant_id
    )


def _started_events(turn: Any) -> list[SessionEvent]:
    return list(SessionEvent.objects.filter(turn=turn, type="turn.started").order_by("id"))


def test_a_first_runs_turn_started_is_written_by_the_statement_that_starts_it(
    world: World,
) -> None:
    agent = make_agent(world.tenant_a, SCRIPT, tools=["events_so_far"], slug="announced")
    turn = services.turn_enqueue(session=make_session(agent), message="look")
    queries = _run_recording_queries(turn, params=True)

    [started] = _started_events(turn)
    assert started.payload == {"turn_id": str(turn.id), "resumed": False, "replayed_nodes": 0}
    assert started.tenant_id == turn.tenant_id and started.session_id == turn.session_id
    # In the log's order, sealed into the session's chain like every other event.
    log = list(SessionEvent.objects.filter(session=turn.session_id).order_by("id"))
    assert [e.type for e in log[:2]] == ["turn.accepted", "turn.started"]
    assert all(e.hash and e.chain_seq for e in log)
    # One INSERT of it, in the start statement: the loop's emit of it was not written again.
    carrying = [sql for sql in queries if "turn.started" in sql]
    assert len(carrying) == 1 and "WITH started AS" in carrying[0]


def test_a_turn_that_does_not_start_gets_no_turn_started(world: World) -> None:
    agent = make_agent(world.tenant_a, SCRIPT, tools=["events_so_far"], slug="not-started")
    session = make_session(agent)
    first = services.turn_enqueue(session=session, message="look")
    second = services.turn_enqueue(session=session, message="look again")

    # Behind an unfinished earlier turn, and once finished: nothing to announce.
    assert _execute_as_dispatched(second) == "blocked_by_earlier_turn"
    assert _execute_as_dispatched(first) == "completed"
    assert _execute_as_dispatched(first) == "already_finished"
    assert len(_started_events(first)) == 1 and not _started_events(second)


def test_a_resumed_run_says_so_through_the_loop(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = make_agent(world.tenant_a, SCRIPT, tools=["events_so_far"], slug="resumed")
    turn = services.turn_enqueue(session=make_session(agent), message="look")

    def dies(*args: Any, **kwargs: Any) -> Any:
        raise WorkerKilled()

    monkeypatch.setattr(adapters, "tool_call", dies)
    with pytest.raises(WorkerKilled):
        _execute_as_dispatched(turn)
    monkeypatch.undo()
    assert _execute_as_dispatched(turn) == "completed"

    first, resumed = _started_events(turn)
    assert first.payload["resumed"] is False
    assert resumed.payload["resumed"] is True and resumed.payload["replayed_nodes"] > 0


def test_a_task_naming_another_tenant_writes_nothing_into_its_log(world: World) -> None:
    """The task's tenant is not trusted: the statement writes `turn.started` only for the
    turn's own tenant; otherwise the loop writes it, under the turn's tenant, as before."""
    agent = make_agent(world.tenant_a, SCRIPT, tools=["events_so_far"], slug="forged")
    turn = services.turn_enqueue(session=make_session(agent), message="look")

    assert _execute_as_dispatched(turn, tenant_id=world.tenant_b.id) == "completed"
    [started] = _started_events(turn)
    assert started.tenant_id == world.tenant_a.id
    assert not SessionEvent.objects.filter(tenant=world.tenant_b).exists()


def test_a_cancellation_asked_while_a_tool_runs_is_seen_with_its_result(world: World) -> None:
    script = [{"tool": "cancel_my_turn", "arguments": {}}, {"final": "never"}]
    agent = make_agent(world.tenant_a, script, tools=["cancel_my_turn"], slug="canceller")
    turn = services.turn_enqueue(session=make_session(agent), message="stop me")

    assert orchestrator.turn_execute(turn_id=turn.id) == "cancelled"

    nodes = {n.node_id: n for n in ActionNode.objects.filter(turn=turn)}
    call = next(n for n in nodes.values() if n.kind == "tool_call")
    # The tool's result and observation are stored, and no model was asked again.
    assert call.status == "completed" and call.outputs["output"] == {"asked": True}
    assert f"{call.node_id}:obs" in nodes
    assert [n.kind for n in nodes.values()].count("model_call") == 1
    types = list(SessionEvent.objects.filter(turn=turn).values_list("type", flat=True))
    assert types[-2:] == ["tool.result", "turn.cancelled"]
    assert turn.__class__.objects.get(id=turn.id).status == TurnStatus.CANCELLED


def test_no_event_goes_to_the_database_on_its_own(world: World) -> None:
    agent = make_agent(world.tenant_a, SCRIPT, tools=["events_so_far"], slug="watcher2")
    turn = services.turn_enqueue(session=make_session(agent), message="look")
    queries = _run_recording_queries(turn)

    table = SessionEvent._meta.db_table
    inserts = [sql for sql in queries if f'INSERT INTO "{table}"' in sql]
    events = SessionEvent.objects.filter(turn=turn).exclude(type="turn.accepted").count()
    # Events queued back to back go in one INSERT of several rows.
    assert 0 < sum(sql.count(f'INSERT INTO "{table}"') for sql in inserts) < events
    # Each query that writes events also writes the checkpoint, check-in or outcome that
    # made them wait: it holds more statements than event INSERTs.
    for sql in inserts:
        assert sql.count(";\n") + 1 > sql.count(f'INSERT INTO "{table}"'), sql[:300]


def test_a_run_reads_the_agents_policies_once_for_all_its_calls(world: World) -> None:
    agent = make_agent(world.tenant_a, SCRIPT, tools=["events_so_far"], slug="watcher3")
    turn = services.turn_enqueue(session=make_session(agent), message="look")
    queries = _run_recording_queries(turn)

    decisions = SessionEvent.objects.filter(turn=turn, type="policy.decision")
    assert decisions.count() == 2
    assert all(d.payload["policies"] for d in decisions)  # both decided by the default policy
    assert sum('FROM "policies_policy"' in sql for sql in queries) == 1


def test_a_model_calls_ledger_row_rides_with_its_node(world: World) -> None:
    agent = make_agent(world.tenant_a, SCRIPT, tools=["events_so_far"], slug="watcher4")
    turn = services.turn_enqueue(session=make_session(agent), message="look")
    queries = _run_recording_queries(turn)

    ledger = [sql for sql in queries if "INSERT INTO budgets_usagerecord" in sql]
    assert len(ledger) == 3  # one row per model call
    # Each in the same query (one round trip, one transaction) as the call's node.
    assert all(f'INSERT INTO "{ActionNode._meta.db_table}"' in sql for sql in ledger)
    # and the holds were settled once the rows were committed: nothing is left held.
    session = turn.session
    caps = budget_ledger.caps_for_turn(
        tenant_id=turn.tenant_id,
        agent_id=agent.id,
        user_id=session.user_id,
        session_id=session.id,
        turn_id=turn.id,
        builtin=builtin_caps(agent),
    )
    states = budget_ledger.ledger().states([cap.counter for cap in caps])
    turn.refresh_from_db()
    turn_counter = next(c.counter.key for c in caps if c.counter.scope == "turn")
    assert all(state is not None and state.reserved_tokens == 0 for state in states.values())
    assert states[turn_counter].spent_tokens == turn.input_tokens + turn.output_tokens > 0  # type: ignore[union-attr]


def test_a_run_takes_the_obligations_limits_from_the_settings(
    world: World, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.WARDEN_BUDGET_TRIM_TOOLS = 1
    settings.WARDEN_BUDGET_COMPRESSED_OBSERVATION_CHARS = 321
    settings.WARDEN_BUDGET_KEEP_HISTORY_TURNS = 0
    seen: list[Any] = []
    real = orchestrator.run_turn

    def spy(**kwargs: Any) -> Any:
        seen.append(kwargs["config"])
        return real(**kwargs)

    monkeypatch.setattr(orchestrator, "run_turn", spy)
    agent = make_agent(world.tenant_a, [{"final": "done"}], slug="configured")
    turn = services.turn_enqueue(session=make_session(agent), message="hi")

    assert orchestrator.turn_execute(turn_id=turn.id) == "completed"
    [config] = seen
    assert (
        config.trim_tools_to,
        config.compressed_observation_chars,
        config.compressed_history_exchanges,
    ) == (1, 321, 0)


def test_a_check_in_compiled_once_carries_each_new_heartbeat(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    agent = make_agent(world.tenant_a, [{"final": "ok"}], slug="beats")
    turn = services.turn_enqueue(session=make_session(agent), message="hi")
    writes = adapters.TurnWrites(turn.session, turn)
    start = timezone.now()
    now = iter([start, start + timedelta(seconds=5)])
    monkeypatch.setattr(adapters.timezone, "now", lambda: next(now))

    writes._check_in_statement()
    reused = writes._check_in_statement()
    compiled = batch.update(
        Turn.objects.filter(id=turn.id, cancel_requested=False),
        heartbeat_at=start + timedelta(seconds=5),
    )
    monkeypatch.undo()

    assert reused == compiled
    writes.send(check_in=True)  # and it is one the database takes
    assert Turn.objects.get(id=turn.id).heartbeat_at is not None
