"""Crash-safe resume: a killed worker loses nothing and runs no non-idempotent tool twice."""

from __future__ import annotations

import pytest

from apps.agents.runtime.loop import run_turn
from apps.agents.runtime.memory import InMemoryCheckpointStore, ListEventSink, ScriptedModel
from apps.llm.types import ProviderTimeout

from .builders import answer, calls, standard_tools


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing in the loop may swallow it."""


SCRIPT = (
    calls(("weather", {"city": "Oslo"})),
    calls(("write_file", {"path": "a.txt"})),
    answer("wrote a.txt"),
)


def script():
    return list(SCRIPT)


def tools_with_writer(*, idempotent, crash_times):
    """write_file dies (like a killed worker) on its first `crash_times` runs."""
    runs = {"n": 0}

    def write_file(path):
        runs["n"] += 1
        if runs["n"] <= crash_times:
            raise WorkerKilled
        return f"wrote {path}"

    return standard_tools().add(
        "write_file", write_file, input_schema={"type": "object"}, idempotent=idempotent
    )


def run(model, tools, store, events=None):
    return run_turn(
        turn_id="t1",
        user_message="write the file",
        system_prompt="sys",
        model=model,
        tools=tools,
        checkpoints=store,
        events=events,
    )


def test_interrupted_idempotent_tool_is_rerun_and_completed_steps_are_not():
    store, model = InMemoryCheckpointStore(), ScriptedModel(script())
    tools = tools_with_writer(idempotent=True, crash_times=1)
    with pytest.raises(WorkerKilled):
        run(model, tools, store)
    assert {r.node_id: r.status for r in store.load("t1")}["t1:1:0"] == "started"

    events = ListEventSink()
    outcome = run(model, tools, store, events)

    assert outcome.status == "completed"
    assert outcome.final_answer == "wrote a.txt"
    # The model was asked three times in total: steps 0 and 1 were replayed.
    assert len(model.requests) == 3
    assert tools.count("weather") == 1
    # write_file: the interrupted run and one re-run, under the same idempotency key.
    assert [c for c in tools.calls if c[0] == "write_file"] == [
        ("write_file", {"path": "a.txt"}, "t1:1:0"),
        ("write_file", {"path": "a.txt"}, "t1:1:0"),
    ]
    # Replayed work is not re-announced; the re-run is flagged.
    assert events.types() == [
        "turn.started",
        "tool.call",
        "tool.result",
        "model.called",
        "turn.completed",
    ]
    assert events.of_type("tool.call")[0]["rerun"] is True
    assert events.of_type("turn.started")[0]["replayed_nodes"] == 5


def test_resumed_turn_sends_the_model_exactly_what_an_uninterrupted_one_would():
    clean_model = ScriptedModel(script())
    run(clean_model, tools_with_writer(idempotent=True, crash_times=0), InMemoryCheckpointStore())

    store, model = InMemoryCheckpointStore(), ScriptedModel(script())
    tools = tools_with_writer(idempotent=True, crash_times=1)
    with pytest.raises(WorkerKilled):
        run(model, tools, store)
    run(model, tools, store)

    assert model.requests[-1] == clean_model.requests[-1]


def test_interrupted_non_idempotent_tool_fails_the_turn_visibly():
    store, model = InMemoryCheckpointStore(), ScriptedModel(script())
    tools = tools_with_writer(idempotent=False, crash_times=1)
    with pytest.raises(WorkerKilled):
        run(model, tools, store)

    events = ListEventSink()
    outcome = run(model, tools, store, events)

    assert outcome.status == "failed"
    assert outcome.reason == "non_idempotent_tool_interrupted"
    assert "write_file" in outcome.detail
    assert tools.count("write_file") == 1
    assert len(model.requests) == 2
    assert events.of_type("turn.failed")[0]["reason"] == "non_idempotent_tool_interrupted"


def test_non_idempotent_tool_that_finished_before_the_crash_is_not_rerun():
    store, model = InMemoryCheckpointStore(), ScriptedModel(script())
    tools = tools_with_writer(idempotent=False, crash_times=0)

    class KillOnSecondResult(ListEventSink):
        # The worker dies right after write_file finished and was checkpointed.
        def emit(self, event_type, payload):
            if event_type == "model.called" and payload["step_index"] == 2:
                raise WorkerKilled

    with pytest.raises(WorkerKilled):
        run(model, tools, store, KillOnSecondResult())
    model_after_crash = ScriptedModel([answer("wrote a.txt")])
    outcome = run(model_after_crash, tools, store)

    assert outcome.status == "completed"
    assert tools.count("write_file") == 1
    assert len(model_after_crash.requests) == 1


def test_crash_between_model_checkpoint_and_tool_start_does_not_ask_the_model_again():
    store, model = InMemoryCheckpointStore(), ScriptedModel(script())
    tools = tools_with_writer(idempotent=False, crash_times=0)

    class DiesOnce:
        died = False

        def decides_in_process(self, call):
            return False

        def check(self, call, *, ctx):
            if not self.died:
                self.died = True
                raise WorkerKilled
            from apps.agents.runtime.ports import GateDecision

            return GateDecision.allow()

    gate = DiesOnce()
    for attempt in range(2):
        try:
            outcome = run_turn(
                turn_id="t1",
                user_message="write the file",
                system_prompt="sys",
                model=model,
                tools=tools,
                checkpoints=store,
                policy=gate,
            )
        except WorkerKilled:
            assert attempt == 0
    assert outcome.status == "completed"
    assert len(model.requests) == 3
    assert tools.count("weather") == 1


def test_resuming_a_finished_turn_does_nothing_but_report_the_outcome():
    store, tools = InMemoryCheckpointStore(), tools_with_writer(idempotent=False, crash_times=0)
    first = run(ScriptedModel(script()), tools, store)

    idle_model, events = ScriptedModel([]), ListEventSink()
    again = run(idle_model, tools, store, events)

    assert again.status == "completed"
    assert again.final_answer == first.final_answer
    assert again.steps == first.steps
    assert again.usage == first.usage
    assert idle_model.requests == []
    assert tools.count("write_file") == 1
    # Announced again: the first worker may have died before announcing it.
    assert events.types() == ["turn.started", "turn.completed"]


def test_prefilled_store_from_another_process_is_replayed():
    # As if a different worker wrote the checkpoints: only the records cross over.
    source = InMemoryCheckpointStore()
    tools = tools_with_writer(idempotent=True, crash_times=1)
    with pytest.raises(WorkerKilled):
        run(ScriptedModel(script()), tools, source)
    prefilled = InMemoryCheckpointStore()
    for record in source.load("t1"):
        prefilled.save(record)

    fresh_tools = tools_with_writer(idempotent=True, crash_times=0)
    model = ScriptedModel([answer("wrote a.txt")])
    outcome = run(model, fresh_tools, prefilled)

    assert outcome.status == "completed"
    assert [c[0] for c in fresh_tools.calls] == ["write_file"]
    assert len(model.requests) == 1


def test_retrying_after_a_provider_error_calls_the_model_again():
    store = InMemoryCheckpointStore()
    model = ScriptedModel([ProviderTimeout("endpoint timed out"), *script()])
    tools = tools_with_writer(idempotent=False, crash_times=0)
    assert run(model, tools, store).reason == "provider_error"

    outcome = run(model, tools, store)

    assert outcome.status == "completed"
    # The failed call is not mistaken for a finished one, nor for malformed output.
    assert model.requests[1] == model.requests[0]
    assert [r.status for r in outcome.steps if r.node_id == "t1:0:model:0"] == ["completed"]
