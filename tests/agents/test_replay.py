"""Replay: recorded sessions re-run from their log with no live call — reproduce, diverge, or
are reported incomplete; nothing of the session changes; REST and the command line."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.agents import orchestrator, services
from apps.agents.models import ActionNode, Agent, AgentSession, SessionEvent, Turn, TurnStatus
from apps.agents.replay import ReplayIncomplete, ReplayTooLarge, session_replay
from apps.budgets.models import UsageRecord
from apps.llm.services import endpoint_save
from apps.policies import services as policy_services
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World
from tests.llm.servers import FakeModelServer, chunk, sse, tool_delta

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]

NO_CALCULATOR = """\
package warden

import rego.v1

decision := {"allow": false, "reasons": ["no calculator"]} if input.tool.name == "calculator"
else := {"allow": true}
"""


def _run(session: AgentSession, message: str) -> Turn:
    turn = services.turn_enqueue(session=session, message=message)
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    return turn


def _snapshot(session: AgentSession) -> dict[str, Any]:
    """Everything a replay must leave as it was."""
    return {
        "nodes": list(
            ActionNode.objects.filter(turn__session=session)
            .order_by("turn__seq", "position")
            .values_list("node_id", "status", "inputs", "outputs", "updated_at")
        ),
        "events": list(
            SessionEvent.objects.filter(session=session).values_list("id", "type", "payload")
        ),
        "turns": list(
            Turn.objects.filter(session=session).values_list(
                "seq", "status", "final_answer", "input_tokens", "updated_at"
            )
        ),
        "usage": UsageRecord.objects.filter(tenant_id=session.tenant_id).count(),
    }


@pytest.fixture
def recorded(world: World, two_tool_agent: Agent) -> AgentSession:
    """A session of two completed turns: clock_now then calculator, then a final answer."""
    session = make_session(two_tool_agent, world.alice)
    first = _run(session, "what time is it, and 6*7?")
    assert first.status == TurnStatus.COMPLETED, first.detail
    endpoint = two_tool_agent.allowed_endpoints.get()
    endpoint_save(tenant=world.tenant_a, endpoint=endpoint, options={"script": [{"final": "Bye."}]})
    second = _run(session, "thanks")
    assert second.status == TurnStatus.COMPLETED, second.detail
    return session


def test_a_recorded_session_reproduces_and_nothing_of_it_changes(recorded: AgentSession) -> None:
    before = _snapshot(recorded)
    report = session_replay(session=recorded)
    assert report.reproduces, report.divergence
    assert report.divergence is None
    assert [t.seq for t in report.turns] == [1, 2]
    assert all(t.reproduces for t in report.turns)
    # Every model call, tool call and observation of the first turn was compared.
    recorded_nodes = ActionNode.objects.filter(turn__session=recorded, turn__seq=1)
    assert report.turns[0].nodes_compared >= recorded_nodes.exclude(kind="policy").count() >= 7
    assert report.turns[0].replayed_outcome == "completed"
    assert _snapshot(recorded) == before


def test_recorded_policy_versions_reproduce_while_current_policies_diverge(
    world: World, recorded: AgentSession
) -> None:
    # After the session: a policy that denies the calculator, which the session used.
    policy_services.policy_create(tenant=world.tenant_a, name="no-calc", source=NO_CALCULATOR)

    assert session_replay(session=recorded, policies="recorded").reproduces

    report = session_replay(session=recorded, policies="current")
    assert not report.reproduces
    divergence = report.divergence
    assert divergence is not None
    assert (divergence.turn_seq, divergence.step_index, divergence.call_index) == (1, 1, 0)
    assert divergence.kind == "policy" and divergence.code == "policy_decision_differs"
    assert divergence.node_id.endswith(":1:0:policy")
    assert divergence.recorded["outcome"] == "allow"
    assert divergence.replayed == {"outcome": "deny", "reasons": ["no calculator"]}
    assert [t.reproduces for t in report.turns] == [False]  # stops at the first divergence


def test_an_altered_tool_result_changes_the_next_model_input(recorded: AgentSession) -> None:
    # The clock's result rewritten consistently (its node and its observation): the tool step
    # itself agrees with the record, the model's next prompt does not.
    tool = ActionNode.objects.get(turn__session=recorded, turn__seq=1, node_id__endswith=":0:0")
    obs = ActionNode.objects.get(turn__session=recorded, turn__seq=1, node_id__endswith=":0:0:obs")
    text = '"1999-12-31T23:59:59Z"'
    tool.outputs = {**tool.outputs, "output": "1999-12-31T23:59:59Z", "observation": text[1:-1]}
    tool.save(update_fields=["outputs"])
    obs.outputs = {"content": text[1:-1]}
    obs.save(update_fields=["outputs"])

    report = session_replay(session=recorded)
    divergence = report.divergence
    assert divergence is not None and not report.reproduces
    assert divergence.kind == "model_call"
    assert divergence.code == "model_input_differs"
    assert divergence.field == "inputs.request_digest"
    assert (divergence.turn_seq, divergence.step_index) == (1, 1)
    assert divergence.node_id.endswith(":1:model:0")


def test_a_tool_call_with_other_arguments_than_the_model_asked_for_diverges(
    recorded: AgentSession,
) -> None:
    tool = ActionNode.objects.get(turn__session=recorded, turn__seq=1, node_id__endswith=":1:0")
    tool.inputs = {**tool.inputs, "arguments": {"expression": "6 * 8"}}
    tool.save(update_fields=["inputs"])

    divergence = session_replay(session=recorded).divergence
    assert divergence is not None
    assert (divergence.kind, divergence.code) == ("tool_call", "tool_arguments_differ")
    assert (divergence.step_index, divergence.call_index) == (1, 0)
    assert divergence.recorded == {"expression": "6 * 8"}
    assert divergence.replayed == {"expression": "6 * 7"}


def test_a_different_final_answer_is_named(recorded: AgentSession) -> None:
    Turn.objects.filter(session=recorded, seq=2).update(final_answer="Goodbye.")
    divergence = session_replay(session=recorded).divergence
    assert divergence is not None
    assert (divergence.turn_seq, divergence.kind, divergence.code) == (
        2,
        "turn",
        "final_answer_differs",
    )
    assert (divergence.recorded, divergence.replayed) == ("Goodbye.", "Bye.")


@pytest.mark.parametrize(
    "damage", ["deleted_node", "deleted_last_node", "missing_field", "truncated_log"]
)
def test_incomplete_recorded_data_is_reported_not_crashed_on(
    recorded: AgentSession, damage: str
) -> None:
    turn = Turn.objects.get(session=recorded, seq=1)
    if damage == "deleted_node":
        ActionNode.objects.get(turn=turn, node_id=f"{turn.id}:0:0:obs").delete()
    elif damage == "deleted_last_node":
        ActionNode.objects.get(turn=turn, node_id=f"{turn.id}:2:model:0").delete()
    elif damage == "missing_field":
        node = ActionNode.objects.get(turn=turn, node_id=f"{turn.id}:1:model:0")
        node.outputs = {k: v for k, v in node.outputs.items() if k != "tool_calls"}
        node.save(update_fields=["outputs"])
    else:
        SessionEvent.objects.filter(turn=turn, type="turn.completed").delete()
    with pytest.raises(ReplayIncomplete) as caught:
        session_replay(session=recorded)
    assert caught.value.code == "replay_incomplete"
    assert caught.value.details["turn_seq"] == 1
    problem = caught.value.details["problem"]
    expected = {
        "deleted_node": "is missing",
        "deleted_last_node": "before the model call that gave the final answer",
        "missing_field": "lacks tool_calls",
        "truncated_log": "turn.completed",
    }[damage]
    assert expected in problem


def test_a_replay_makes_no_http_request(world: World) -> None:
    """Recorded against a real chat-completions server; replayed, the server hears nothing."""
    server = (
        FakeModelServer()
        .play(
            sse(
                [
                    chunk(tool_calls=[tool_delta(0, id="c1", name="calculator", args="")]),
                    chunk(tool_calls=[tool_delta(0, args='{"expression": "6*7"}')]),
                    chunk(finish_reason="tool_calls", usage=(20, 5)),
                ]
            ),
            sse([chunk(content="It is 42."), chunk(finish_reason="stop", usage=(30, 4))]),
        )
        .start()
    )
    try:
        endpoint = endpoint_save(
            tenant=world.tenant_a,
            name="gpt",
            provider="openai",
            model="m",
            base_url=server.url,
            price_input_per_mtok=Decimal("0.15"),
            price_output_per_mtok=Decimal("0.60"),
        )
        agent = services.agent_save(
            tenant=world.tenant_a,
            name="GPT",
            slug="gpt",
            allowed_tools=["calculator"],
            allowed_endpoints=[endpoint],
        )
        session = make_session(agent, world.alice)
        turn = _run(session, "what is 6*7?")
        assert turn.final_answer == "It is 42.", turn.detail
        heard = len(server.received)
        assert heard == 2
        before = _snapshot(session)

        report = session_replay(session=session)
        assert report.reproduces, report.divergence
        assert len(server.received) == heard
        assert _snapshot(session) == before
    finally:
        server.stop()


def test_a_session_over_the_request_cap_is_refused(recorded: AgentSession) -> None:
    with pytest.raises(ReplayTooLarge):
        session_replay(session=recorded, max_nodes=3)


# --------------------------------------------------------------------------- REST


def _url(session: AgentSession) -> str:
    return f"/api/v1/sessions/{session.id}/replay"


def test_rest_replay_reports_reproduction(alice_client: APIClient, recorded: AgentSession) -> None:
    response = alice_client.post(_url(recorded), {}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["reproduces"] is True and body["divergence"] is None
    assert body["policies"] == "recorded"
    assert [t["seq"] for t in body["turns"]] == [1, 2]


def test_rest_replay_names_the_first_divergence(
    world: World, alice_client: APIClient, recorded: AgentSession
) -> None:
    policy_services.policy_create(tenant=world.tenant_a, name="no-calc", source=NO_CALCULATOR)
    response = alice_client.post(_url(recorded), {"policies": "current"}, format="json")
    assert response.status_code == 200, response.content
    divergence = response.json()["divergence"]
    assert divergence["code"] == "policy_decision_differs"
    assert (divergence["turn_seq"], divergence["step_index"], divergence["kind"]) == (
        1,
        1,
        "policy",
    )


def test_rest_replay_of_incomplete_data_is_a_stable_409(
    alice_client: APIClient, recorded: AgentSession
) -> None:
    turn = Turn.objects.get(session=recorded, seq=1)
    ActionNode.objects.filter(turn=turn, node_id=f"{turn.id}:1:model:0").delete()
    response = alice_client.post(_url(recorded), {}, format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "replay_incomplete"
    assert body["details"]["turn_seq"] == 1


def test_rest_replay_bad_input_and_cap_are_400(
    alice_client: APIClient, recorded: AgentSession, settings: Any
) -> None:
    response = alice_client.post(_url(recorded), {"policies": "latest"}, format="json")
    assert response.status_code == 400
    response = alice_client.post(_url(recorded), {"turns": 3}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "unknown_field"
    settings.WARDEN_REPLAY_MAX_NODES = 2
    response = alice_client.post(_url(recorded), {}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "replay_too_large"


# --------------------------------------------------------------------------- the command line


def _command(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("replay", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def test_command_exits_0_when_it_reproduces(recorded: AgentSession) -> None:
    code, out, _ = _command(str(recorded.id))
    assert code == 0
    assert "reproduces" in out and "turn 1: ok" in out


def test_command_exits_1_and_names_the_divergence(world: World, recorded: AgentSession) -> None:
    policy_services.policy_create(tenant=world.tenant_a, name="no-calc", source=NO_CALCULATOR)
    code, out, _ = _command(str(recorded.id), "--policies", "current")
    assert code == 1
    assert "diverges at turn 1, step 1, call 0 (policy)" in out
    assert "policy_decision_differs" in out


def test_command_exits_2_on_incomplete_data_and_unknown_sessions(recorded: AgentSession) -> None:
    SessionEvent.objects.filter(session=recorded, type="turn.completed").delete()
    code, _, err = _command(str(recorded.id))
    assert code == 2 and "replay_incomplete" in err
    code, _, err = _command("00000000-0000-0000-0000-000000000000")
    assert code == 2 and "No session" in err
    code, _, err = _command("not-an-id")
    assert code == 2


@pytest.fixture
def cancelled_session(world: World) -> Iterator[AgentSession]:
    """A cancelled turn: its record ends where it stopped."""
    agent = make_agent(world.tenant_a, [{"final": "never"}], slug="cancelled")
    session = make_session(agent, world.alice)
    turn = services.turn_enqueue(session=session, message="hi")
    services.turn_cancel(turn=turn)
    yield session


def test_a_turn_cancelled_before_it_ran_reproduces(cancelled_session: AgentSession) -> None:
    turn = Turn.objects.get(session=cancelled_session)
    assert turn.status == TurnStatus.CANCELLED
    report = session_replay(session=cancelled_session)
    assert report.reproduces, report.divergence
    assert report.turns[0].note


# --------------------------------------------------------------------------- other recorded paths

APPROVE_CALCULATOR = """\
package warden

import rego.v1

decision := {"allow": true, "require_approval": true, "reasons": ["check the sums"]} if {
	input.tool.name == "calculator"
} else := {"allow": true}
"""


@pytest.mark.parametrize("approved", [True, False])
def test_a_turn_that_waited_for_approval_reproduces(world: World, approved: bool) -> None:
    from apps.approvals.models import ApprovalRequest, ApprovalStatus

    policy_services.policy_create(
        tenant=world.tenant_a, name="approve-calc", source=APPROVE_CALCULATOR
    )
    script = [
        {"tool": "calculator", "arguments": {"expression": "2+2"}},
        {"final": "Done: ${last_tool_result}"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["calculator"], slug="careful")
    session = make_session(agent, world.alice)
    turn = _run(session, "2+2?")
    assert (turn.status, turn.outcome) == (TurnStatus.WAITING, "waiting_approval")
    # Parked: the replay parks at the same call, as the record does.
    waiting = session_replay(session=session)
    assert waiting.reproduces, waiting.divergence
    assert waiting.turns[0].replayed_outcome == "waiting_approval"

    # Decided (as the approval services do), then resumed by the worker.
    ApprovalRequest.objects.filter(turn_id=turn.id).update(
        status=ApprovalStatus.APPROVED if approved else ApprovalStatus.REJECTED,
        approver="dave",
        rationale="fine" if approved else "no",
    )
    Turn.objects.filter(id=turn.id).update(status=TurnStatus.QUEUED)
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED, turn.detail

    report = session_replay(session=session)
    assert report.reproduces, report.divergence
    # The approver's decision is part of what the record replays: a different one diverges.
    node = ActionNode.objects.get(turn=turn, kind="tool_call")
    node.inputs = {**node.inputs, "approval": {**node.inputs["approval"], "approved": not approved}}
    node.save(update_fields=["inputs"])
    divergence = session_replay(session=session).divergence
    assert divergence is not None and divergence.node_id == node.node_id


def test_denied_calls_and_malformed_replies_reproduce(world: World) -> None:
    policy_services.policy_create(tenant=world.tenant_a, name="no-calc", source=NO_CALCULATOR)
    script = [
        {"tool": "calculator", "raw_arguments": "{not json"},
        {"tool": "calculator", "arguments": {"expression": "2+2"}},
        {"final": "I was not allowed."},
    ]
    agent = make_agent(world.tenant_a, script, tools=["calculator"], slug="denied")
    session = make_session(agent, world.alice)
    turn = _run(session, "2+2?")
    assert turn.status == TurnStatus.COMPLETED, turn.detail
    statuses = set(ActionNode.objects.filter(turn=turn).values_list("kind", "status"))
    assert {("model_call", "malformed"), ("tool_call", "denied")} <= statuses
    report = session_replay(session=session)
    assert report.reproduces, report.divergence


@pytest.mark.django_db(transaction=False)
def test_replay_inside_a_transaction_leaves_it_writable(world: World) -> None:
    """Called inside a transaction (ATOMIC_REQUESTS, an admin view), the replay's read-only
    savepoint ends with it: the caller can still write afterwards."""
    agent = make_agent(world.tenant_a, [{"final": "hi"}], slug="inner")
    session = make_session(agent, world.alice)
    turn = services.turn_enqueue(session=session, message="hello")
    # Not run: a queued turn is skipped, the replay still opens its read-only savepoint.
    report = session_replay(session=session)
    assert report.skipped and report.skipped[0]["seq"] == turn.seq
    services.turn_enqueue(session=session, message="still writable")
    assert Turn.objects.filter(session=session).count() == 2


@pytest.mark.usefixtures("budget_prefix")
def test_a_turn_stopped_by_its_budget_reproduces(world: World) -> None:
    agent = make_agent(
        world.tenant_a, [{"final": "never said"}], slug="broke", max_tokens_per_session=5
    )
    session = make_session(agent, world.alice)
    turn = _run(session, "hello there")
    assert (turn.status, turn.outcome) == (TurnStatus.FAILED, "budget_exceeded"), turn.detail
    report = session_replay(session=session)
    assert report.reproduces, report.divergence
    assert report.turns[0].replayed_outcome == "budget_exceeded"


def test_a_long_running_tool_replays_parked_then_finished(
    world: World, jobs_dispatched: list[str]
) -> None:
    from apps.agents import jobs
    from apps.agents.models import ToolJob
    from apps.tools import services as tool_services

    tool = tool_services.tool_register_builtin(tenant=world.tenant_a, name="count_up")
    tool_services.tool_update(tool=tool, enabled=True, long_running=True)
    script = [
        {"tool": "count_up", "arguments": {"steps": 2}},
        {"final": "Done: ${tool_result_1}"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["count_up"], slug="patient")
    session = make_session(agent, world.alice)
    turn = _run(session, "count")
    assert (turn.status, turn.outcome) == (TurnStatus.WAITING, "waiting_tool")
    # Parked on the job: the record ends at the call, and so does the replay.
    parked = session_replay(session=session)
    assert parked.reproduces, parked.divergence
    assert parked.turns[0].note

    job = ToolJob.objects.get(turn=turn)
    assert jobs.tool_job_run(job_id=job.id) == "completed"
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED, turn.detail
    finished = session_replay(session=session)
    assert finished.reproduces, finished.divergence
    assert finished.turns[0].replayed_outcome == "completed" and not finished.turns[0].note


def test_a_model_call_the_log_has_no_output_for_is_named(world: World) -> None:
    forever = [{"tool": "calculator", "arguments": {"expression": "1+1"}}] * 5
    agent = make_agent(world.tenant_a, forever, tools=["calculator"], slug="loopy", max_steps=2)
    session = make_session(agent, world.alice)
    turn = _run(session, "loop")
    assert turn.outcome == "max_steps_exceeded"
    assert session_replay(session=session).reproduces
    # The agent now has room for a third step: the replay asks for a reply never recorded.
    Agent.objects.filter(id=agent.id).update(max_steps=3)
    divergence = session_replay(session=session).divergence
    assert divergence is not None
    assert (divergence.kind, divergence.code) == ("model_call", "no_recorded_output")
    assert (divergence.turn_seq, divergence.step_index) == (1, 2)
    assert divergence.node_id == f"{turn.id}:2:model:0"
