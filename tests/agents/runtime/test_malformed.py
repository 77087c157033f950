"""Malformed output never runs: it is rejected, reported and re-prompted, within a bound."""

from __future__ import annotations

from apps.agents.runtime.loop import LoopConfig, run_turn
from apps.agents.runtime.memory import ListEventSink, ScriptedModel
from apps.llm.types import FEEDBACK_NAME

from .builders import answer, calls, json_action, json_final, standard_tools


def test_malformed_call_is_reprompted_with_the_error_and_a_smaller_allowance():
    tools = standard_tools()
    model = ScriptedModel(
        [
            calls(("add", {"a": "two", "b": 3}), text="Adding."),  # fails inputSchema
            calls(("add", {"a": 2, "b": 3})),
            answer("5"),
        ]
    )
    events = ListEventSink()
    outcome = run_turn(
        turn_id="t1",
        user_message="2+3?",
        model=model,
        tools=tools,
        events=events,
        config=LoopConfig(max_output_tokens=1000),
    )

    assert outcome.status == "completed"
    assert outcome.final_answer == "5"
    # The malformed call never ran; only the corrected one did.
    assert tools.calls == [("add", {"a": 2, "b": 3}, "t1:0:0")]

    first, retry, after = model.requests
    assert first.max_output_tokens == 1000
    assert retry.max_output_tokens == 500
    correction = retry.messages[-1]
    assert correction.role == "user"
    assert "nothing was executed" in correction.content
    assert "$.a: 'two' is not of type 'integer'" in correction.content
    # The bad attempt is echoed as text (not as a real tool call awaiting a result).
    assert retry.messages[-2].role == "assistant"
    assert retry.messages[-2].tool_calls == ()
    assert '"two"' in retry.messages[-2].content
    # Once a valid step arrives the allowance resets; the detour stays in the
    # transcript, in order, so later steps (and replays) see what happened.
    assert after.max_output_tokens == 1000
    assert [m.role for m in after.messages[-4:]] == ["assistant", "user", "assistant", "tool"]
    assert after.messages[-3].name == FEEDBACK_NAME

    malformed = events.of_type("step.malformed")
    assert len(malformed) == 1
    assert malformed[0]["attempt"] == 0
    assert "'two' is not of type 'integer'" in malformed[0]["error"]
    statuses = [(r.node_id, r.status, r.parents) for r in outcome.steps if r.kind == "model_call"]
    assert statuses[:2] == [
        ("t1:0:model:0", "malformed", ()),
        ("t1:0:model:1", "completed", ("t1:0:model:0",)),
    ]


def test_non_json_text_in_json_mode_is_reprompted_then_accepted():
    tools = standard_tools()
    model = ScriptedModel(
        [answer("Sure! Let me add."), json_action("add", {"a": 1, "b": 1}), json_final("2")]
    )
    outcome = run_turn(
        turn_id="t1",
        user_message="1+1?",
        model=model,
        tools=tools,
        config=LoopConfig(json_steps=True),
    )
    assert outcome.final_answer == "2"
    assert "not valid JSON" in model.requests[1].messages[-1].content
    assert model.requests[1].messages[-2].content == "Sure! Let me add."
    assert tools.count("add") == 1


def test_gives_up_after_the_bound_without_executing_anything():
    tools = standard_tools()
    model = ScriptedModel([calls(("rm_rf", {"path": "/"})) for _ in range(5)] + [answer("never")])
    events = ListEventSink()
    outcome = run_turn(
        turn_id="t1",
        user_message="clean up",
        model=model,
        tools=tools,
        events=events,
        config=LoopConfig(max_reprompts=2, max_output_tokens=1024, min_output_tokens=300),
    )
    assert outcome.status == "failed"
    assert outcome.reason == "malformed_output"
    assert "unknown tool 'rm_rf'" in outcome.detail
    assert tools.calls == []
    # One try plus two re-prompts, each allowance halved down to the floor.
    assert [r.max_output_tokens for r in model.requests] == [1024, 512, 300]
    assert len(events.of_type("step.malformed")) == 3
    assert events.of_type("turn.failed")[0]["reason"] == "malformed_output"
    # The last correction carries both earlier mistakes.
    assert sum("rejected" in m.content for m in model.requests[2].messages) == 2


def test_reprompt_bound_is_per_step():
    model = ScriptedModel(
        [
            answer(""),  # malformed: empty
            calls(("add", {"a": 1, "b": 1})),
            answer(""),  # malformed again, in the next step
            answer("2"),
        ]
    )
    outcome = run_turn(
        turn_id="t1",
        user_message="1+1?",
        model=model,
        tools=standard_tools(),
        config=LoopConfig(max_reprompts=1),
    )
    assert outcome.status == "completed"
    assert outcome.final_answer == "2"
