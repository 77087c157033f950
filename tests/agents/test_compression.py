"""Context compression through the orchestrator, on the real database and budgets: a session
whose history nears its model's window gets its oldest turns summarised by the scripted
model, once; the summary is stored, on the timeline, metered, and shown to later turns."""

from __future__ import annotations

from typing import Any

import pytest

from apps.agents import orchestrator, services
from apps.agents.models import ActionNode, Agent, SessionEvent, SessionSummary, Turn, TurnStatus
from apps.agents.replay import session_replay
from apps.agents.runtime.compression import OMITTED_TURNS, SUMMARY_HEADING
from apps.budgets.models import UsageRecord
from apps.llm.services import endpoint_save
from apps.llm.tokens import ScriptedCounter
from apps.tenants.models import Tenant
from tests.agents.conftest import make_session
from tests.conftest import World

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]

WINDOW = 1000
OUTPUT = 100
SCRIPT = [{"final": "Noted: ${last_user_message}"}]


def agent_with_window(tenant: Tenant, **options: Any) -> Agent:
    endpoint = endpoint_save(
        tenant=tenant,
        name="scripted-small-window",
        provider="scripted",
        model="scripted",
        tier="small",
        context_window=WINDOW,
        allowed_sensitivities=["public", "internal", "confidential"],
        options={"script": SCRIPT, **options},
    )
    return services.agent_save(
        tenant=tenant,
        name="Compressed",
        slug="compressed",
        max_output_tokens_per_turn=OUTPUT,
        allowed_endpoints=[endpoint],
    )


def say(session: Any, seq: int) -> Turn:
    turn = services.turn_enqueue(session=session, message=f"message {seq}: " + "z" * 300)
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
    return turn


def step_messages(turn: Turn) -> int:
    """How many messages the turn's first step sent the model."""
    node = ActionNode.objects.get(turn=turn, node_id=f"{turn.id}:0:model:0")
    return int(node.inputs["message_count"])


def events(turn: Turn, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in SessionEvent.objects.filter(turn=turn, type=kind).order_by("id")]


def test_a_long_session_is_summarised_once_and_later_turns_use_the_summary(
    world: World,
) -> None:
    session = make_session(agent_with_window(world.tenant_a))
    turns: list[Turn] = []
    for seq in range(1, 9):
        turns.append(say(session, seq))
        if SessionSummary.objects.filter(session=session).exists():
            break
    made_by = turns[-1]
    # Not from the start: the first turns fit well within the window, in full.
    assert made_by.seq >= 4
    for earlier in turns[:-1]:
        assert events(earlier, "memory.summarized") == []
        assert step_messages(earlier) == 2 * (earlier.seq - 1) + 1  # no system prompt

    # Near the window: every turn but the last two is summarised, by the scripted model.
    [summary] = SessionSummary.objects.filter(session=session)
    last = made_by.seq - 3
    assert (summary.tenant_id, summary.turn_id) == (world.tenant_a.id, made_by.id)
    assert (summary.from_seq, summary.through_seq) == (1, last)
    assert summary.text.startswith("Earlier the user asked: message 1:")
    assert summary.turn_ids == [str(t.id) for t in turns[:last]]
    # On the timeline, with what it covers and what it saved.
    [event] = events(made_by, "memory.summarized")
    assert (event["from_seq"], event["through_seq"], event["turns"]) == (1, last, last)
    assert event["tokens_saved"] == summary.tokens_before - summary.tokens_after > 0
    assert event["prompt_fraction"] >= 0.8
    assert (event["counter"], event["exact"]) == ("scripted", True)
    # Metered like any model call: an action-graph node and a ledger row.
    node = ActionNode.objects.get(turn=made_by, node_id=f"{made_by.id}:summary")
    assert (node.kind, node.status, node.outputs["summary"]) == (
        "model_call",
        "completed",
        summary.text,
    )
    assert UsageRecord.objects.filter(turn_id=made_by.id, node_id=node.node_id).count() == 1
    # This turn's step already saw the summary (in the system message) and two turns.
    assert step_messages(made_by) == 1 + 2 * 2 + 1

    # The next turn reuses it: no new summary, the summarised turns stay out.
    following = say(session, made_by.seq + 1)
    assert SessionSummary.objects.filter(session=session).count() == 1
    assert events(following, "memory.summarized") == []
    assert not ActionNode.objects.filter(turn=following, node_id__endswith=":summary").exists()
    assert step_messages(following) == 1 + 2 * 3 + 1
    # What the model was sent, to the token: the summary, then turns last+1.. in full.
    shown = Turn.objects.filter(session=session, seq__gt=last, seq__lt=following.seq)
    prompt = [
        f"{SUMMARY_HEADING.format(first=1, last=last)}\n{summary.text}",
        *(text for t in shown.order_by("seq") for text in (t.user_message, t.final_answer)),
        following.user_message,
    ]
    node = ActionNode.objects.get(turn=following, node_id=f"{following.id}:0:model:0")
    assert node.input_tokens == sum(ScriptedCounter().count(text) for text in prompt)


def test_a_failing_summariser_degrades_and_the_turn_still_answers(world: World) -> None:
    session = make_session(agent_with_window(world.tenant_a, summary={"error": "unavailable"}))
    failed: list[dict[str, Any]] = []
    for seq in range(1, 9):
        turn = say(session, seq)  # completes, summariser or not
        failed = events(turn, "memory.summary_failed")
        if failed:
            break
    [event] = failed
    assert event["reason"] == "provider_error"
    assert event["fallback"] == "omitted_oldest_turns"
    assert event["from_seq"] == 1 and event["through_seq"] == turn.seq - 3
    assert not SessionSummary.objects.filter(session=session).exists()
    assert events(turn, "memory.summarized") == []
    # The turns it could not summarise were left out of the prompt, and the model was told.
    assert step_messages(turn) == 1 + 2 * 2 + 1
    shown = Turn.objects.filter(session=session, seq__gt=turn.seq - 3, seq__lt=turn.seq)
    prompt = [
        OMITTED_TURNS.format(first=1, last=turn.seq - 3),
        *(text for t in shown.order_by("seq") for text in (t.user_message, t.final_answer)),
        turn.user_message,
    ]
    step = ActionNode.objects.get(turn=turn, node_id=f"{turn.id}:0:model:0")
    assert step.input_tokens == sum(ScriptedCounter().count(text) for text in prompt)
    node = ActionNode.objects.get(turn=turn, node_id=f"{turn.id}:summary")
    assert node.status == "failed" and "unavailable" in node.outputs["error"]


def test_the_console_shows_a_sessions_summaries_to_its_tenant_only(
    world: World, alice_client: Any, charlie_client: Any
) -> None:
    session = make_session(agent_with_window(world.tenant_a))
    for seq in range(1, 9):
        say(session, seq)
        if SessionSummary.objects.filter(session=session).exists():
            break
    [summary] = SessionSummary.objects.filter(session=session)
    page = f"/admin/agents/agentsession/{session.id}/change/"
    shown = alice_client.get(page)
    assert shown.status_code == 200
    assert summary.text[:40] in shown.content.decode()
    other = charlie_client.get(page)  # another tenant's owner
    assert other.status_code in (302, 404)
    assert summary.text[:40] not in other.content.decode()


def test_a_compressed_session_replays_from_the_summaries_it_kept(world: World) -> None:
    """Replay starts each turn from the history it ran with: the turn that summarised is
    replayed from its kept summary (no summary call of its own), and the turns before it
    are not handed a summary a later turn made."""
    session = make_session(agent_with_window(world.tenant_a))
    seq = 0
    while not SessionSummary.objects.filter(session=session).exists():
        seq += 1
        assert seq <= 8, "the session was never summarised"
        say(session, seq)
    say(session, seq + 1)  # a turn after the summary, which it shows
    report = session_replay(session=session, policies="recorded")
    assert report.reproduces, report.as_dict()
    assert len(report.turns) == seq + 1
