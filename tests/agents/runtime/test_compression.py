"""Context compression in the loop: near the window the oldest turns are summarised once, and
the summary stands in for them; far from it nothing happens; a failing summariser degrades."""

from __future__ import annotations

from typing import Any

from apps.agents.runtime.compression import (
    SUMMARY_PURPOSE,
    ContextMemory,
    history_messages,
)
from apps.agents.runtime.loop import LoopConfig, run_turn
from apps.agents.runtime.memory import (
    DictTools,
    InMemoryCheckpointStore,
    ListEventSink,
    ListSummaryStore,
    ScriptedModel,
)
from apps.agents.runtime.ports import BudgetExceeded, Exchange, Reservation
from apps.llm.tokens import ScriptedCounter, count_messages
from apps.llm.types import Message, ModelRequest, ProviderUnavailable

from .builders import answer

OUTPUT = 100
CONFIG = LoopConfig(max_output_tokens=OUTPUT, min_output_tokens=OUTPUT)
SYSTEM = "You are terse."
ASK = "And now?"
SUMMARY = "Earlier: the user asked about apples, pears and plums."


def exchanges(count: int, start: int = 1) -> tuple[Exchange, ...]:
    return tuple(
        Exchange(
            seq=seq,
            turn_id=f"turn-{seq}",
            user=f"question {seq}: " + "x" * 200,
            answer=f"answer {seq}: " + "y" * 200,
        )
        for seq in range(start, start + count)
    )


def prompt_tokens(history: tuple[Exchange, ...]) -> int:
    """The first step's prompt as the loop builds it, counted as the model counts it."""
    messages = [
        Message(role="system", content=SYSTEM),
        *history_messages(history),
        Message(role="user", content=ASK),
    ]
    return count_messages(ScriptedCounter(), messages)


def memory_at(
    fraction: float, history: tuple[Exchange, ...], store: ListSummaryStore | None = None
) -> ContextMemory:
    """Memory whose model window puts the first prompt at `fraction` of it."""
    window = int(prompt_tokens(history) / fraction) + OUTPUT
    return ContextMemory(
        exchanges=history,
        summary=store.latest() if store is not None else None,
        store=store or ListSummaryStore(),
        counter=ScriptedCounter(),
        context_window=window,
        input_budget=1_000_000,
    )


def run(memory: ContextMemory, model: Any, **kwargs: Any) -> tuple[Any, ListEventSink]:
    events = ListEventSink()
    outcome = run_turn(
        turn_id=kwargs.pop("turn_id", "turn-7"),
        user_message=ASK,
        system_prompt=SYSTEM,
        model=model,
        tools=DictTools(),
        events=events,
        config=CONFIG,
        memory=memory,
        **kwargs,
    )
    return outcome, events


def contents(request: ModelRequest) -> str:
    return "\n".join(m.content for m in request.messages)


def test_far_from_the_window_nothing_is_summarised() -> None:
    model = ScriptedModel([answer("ok")])
    memory = memory_at(0.79, exchanges(6))
    outcome, events = run(memory, model)
    assert outcome.status == "completed"
    [request] = model.requests
    assert request.metadata.get("purpose") != SUMMARY_PURPOSE
    # Every earlier turn is in the prompt, in full.
    assert all(e.user in contents(request) and e.answer in contents(request) for e in exchanges(6))
    assert events.of_type("memory.summarized") == []
    assert memory.store.latest() is None  # type: ignore[attr-defined]


def test_near_the_window_the_oldest_turns_are_summarised_and_replaced() -> None:
    model = ScriptedModel([answer(SUMMARY), answer("ok")])
    memory = memory_at(0.81, exchanges(6))
    outcome, events = run(memory, model)
    assert outcome.status == "completed"

    summarise, step = model.requests
    assert summarise.metadata["purpose"] == SUMMARY_PURPOSE
    assert summarise.tools == ()
    # The summariser read turns 1-4; the last two stay verbatim.
    for e in exchanges(4):
        assert e.user in contents(summarise)
    assert "question 5" not in contents(summarise)
    # The step's prompt: the summary in the system message, then turns 5 and 6 only.
    assert SUMMARY in step.messages[0].content
    assert "turns 1-4" in step.messages[0].content
    assert [m.content for m in step.messages[1:]] == [
        m.content for m in history_messages(exchanges(2, start=5))
    ] + [ASK]
    assert (
        prompt_tokens(())
        < count_messages(ScriptedCounter(), step.messages)
        < prompt_tokens(exchanges(6))
    )

    [saved] = memory.store.summaries  # type: ignore[attr-defined]
    assert (saved.from_seq, saved.through_seq, saved.text) == (1, 4, SUMMARY)
    assert saved.turn_ids == ("turn-1", "turn-2", "turn-3", "turn-4")
    assert saved.made_by == "turn-7"
    [event] = events.of_type("memory.summarized")
    assert (event["from_seq"], event["through_seq"], event["turns"]) == (1, 4, 4)
    assert event["tokens_saved"] == event["tokens_before"] - event["tokens_after"] > 0
    assert 0.8 <= event["prompt_fraction"] < 0.9
    assert (event["counter"], event["exact"]) == ("scripted", True)
    # The summary call is an action-graph node with its usage, like any model call.
    [node] = [s for s in outcome.steps if s.node_id == "turn-7:summary"]
    assert (node.kind, node.status, node.outputs["summary"]) == ("model_call", "completed", SUMMARY)
    assert node.input_tokens == 10


def test_the_next_turn_uses_the_kept_summary_and_does_not_summarise_again() -> None:
    store = ListSummaryStore()
    run(memory_at(0.81, exchanges(6), store), ScriptedModel([answer(SUMMARY), answer("ok")]))

    # Turn 8: the summary, turns 5-7 (the earlier turn 7 included), and no summary call.
    later = ContextMemory(
        exchanges=exchanges(3, start=5),
        summary=store.latest(),
        store=store,
        counter=ScriptedCounter(),
        context_window=10_000,
        input_budget=1_000_000,
    )
    model = ScriptedModel([answer("ok")])
    outcome, events = run(later, model, turn_id="turn-8")
    assert outcome.status == "completed"
    [request] = model.requests
    assert SUMMARY in request.messages[0].content
    assert "question 1:" not in contents(request) and "question 4:" not in contents(request)
    assert "question 5:" in contents(request) and "question 7:" in contents(request)
    assert len(store.summaries) == 1 and events.of_type("memory.summarized") == []


def test_a_second_summary_folds_the_first_one_in() -> None:
    store = ListSummaryStore()
    run(memory_at(0.81, exchanges(6), store), ScriptedModel([answer(SUMMARY), answer("ok")]))
    model = ScriptedModel([answer("Everything so far, shorter."), answer("ok")])
    later = memory_at(0.81, exchanges(4, start=5), store)
    run(later, model, turn_id="turn-9")
    summarise = model.requests[0]
    assert SUMMARY in contents(summarise)  # the old summary is part of what is summarised
    newest = store.latest()
    assert newest is not None and (newest.from_seq, newest.through_seq) == (1, 6)
    assert SUMMARY not in contents(model.requests[1])


def test_a_failing_summariser_leaves_the_old_turns_out_and_the_turn_runs() -> None:
    model = ScriptedModel([ProviderUnavailable("summariser down"), answer("ok")])
    memory = memory_at(0.81, exchanges(6))
    outcome, events = run(memory, model)
    assert outcome.status == "completed"
    [failed] = events.of_type("memory.summary_failed")
    assert (failed["reason"], failed["from_seq"], failed["through_seq"]) == (
        "provider_error",
        1,
        4,
    )
    assert "summariser down" in failed["detail"]
    assert failed["fallback"] == "omitted_oldest_turns"
    step = model.requests[1]
    assert "Turns 1-4 of this conversation were left out" in step.messages[0].content
    assert "question 4:" not in contents(step) and "question 5:" in contents(step)
    assert memory.store.latest() is None  # type: ignore[attr-defined]
    assert events.of_type("memory.summarized") == []


def test_an_empty_summary_counts_as_a_failure() -> None:
    model = ScriptedModel([answer("   "), answer("ok")])
    outcome, events = run(memory_at(0.81, exchanges(6)), model)
    assert outcome.status == "completed"
    assert [e["reason"] for e in events.of_type("memory.summary_failed")] == ["empty_summary"]


class RefusesSummaries:
    """A budget with no room for the summary call (and room for the step)."""

    def reserve(
        self, *, estimated_tokens: int, ctx: Any, request: ModelRequest | None = None
    ) -> Reservation:
        if request is not None and request.metadata.get("purpose") == SUMMARY_PURPOSE:
            raise BudgetExceeded("session budget: 39000 of 40000 tokens spent")
        return Reservation(id=ctx.idempotency_key, tokens=estimated_tokens)

    def settle(self, reservation: Reservation, *, usage: Any, endpoint: str = "") -> None:
        return None


def test_a_budget_that_refuses_the_summary_degrades_the_same_way() -> None:
    model = ScriptedModel([answer("ok")])
    outcome, events = run(memory_at(0.81, exchanges(6)), model, budget=RefusesSummaries())
    assert outcome.status == "completed"
    assert len(model.requests) == 1  # the summariser was never called
    [failed] = events.of_type("memory.summary_failed")
    assert failed["reason"] == "budget_exceeded"


class Killed(BaseException):
    """Stands in for SIGKILL after the summary was made."""


class DiesAfterTheSummary:
    def __init__(self) -> None:
        self.requests: list[ModelRequest] = []

    def complete(self, request: ModelRequest) -> Any:
        self.requests.append(request)
        if request.metadata.get("purpose") == SUMMARY_PURPOSE:
            return answer(SUMMARY)
        raise Killed()


def test_a_resumed_turn_does_not_summarise_again() -> None:
    store, checkpoints = ListSummaryStore(), InMemoryCheckpointStore()
    first = DiesAfterTheSummary()
    try:
        run(memory_at(0.81, exchanges(6), store), first, checkpoints=checkpoints)
    except Killed:
        pass
    assert len(store.summaries) == 1
    # Resumed: the integrator reads the history again (now with the summary it made).
    resumed = ContextMemory(
        exchanges=exchanges(2, start=5),
        summary=store.latest(),
        store=store,
        counter=ScriptedCounter(),
        context_window=memory_at(0.81, exchanges(6)).context_window,
        input_budget=1_000_000,
    )
    model = ScriptedModel([answer("ok")])
    outcome, events = run(resumed, model, checkpoints=checkpoints)
    assert outcome.status == "completed"
    [request] = model.requests
    assert SUMMARY in request.messages[0].content
    assert first.requests[1].messages == request.messages  # the same prompt as before the crash
    assert len(store.summaries) == 1 and events.of_type("memory.summarized") == []


def test_near_the_turns_input_budget_it_summarises_too() -> None:
    history = exchanges(6)
    memory = ContextMemory(
        exchanges=history,
        summary=None,
        store=ListSummaryStore(),
        counter=ScriptedCounter(),
        context_window=1_000_000,  # the window is far away; the turn's budget is not
        input_budget=prompt_tokens(history),
    )
    model = ScriptedModel([answer(SUMMARY), answer("ok")])
    _, events = run(memory, model)
    assert model.requests[0].metadata["purpose"] == SUMMARY_PURPOSE
    assert len(events.of_type("memory.summarized")) == 1
