"""The loop's main path: tools, observations, events, the action graph and its end states."""

from __future__ import annotations

import json

from apps.agents.runtime.loop import LoopConfig, run_turn
from apps.agents.runtime.memory import (
    FakeClock,
    FixedBudget,
    InMemoryCheckpointStore,
    ListEventSink,
    ScriptedModel,
)
from apps.agents.runtime.steps import build_step_schema
from apps.llm.types import FEEDBACK_NAME, Message, ProviderUnavailable, Usage

from .builders import answer, calls, json_action, json_final, standard_tools


class SlowTools:
    """Wraps tools so each execution takes a known time on the fake clock."""

    def __init__(self, tools, clock, seconds):
        self.tools, self.clock, self.seconds = tools, clock, seconds

    def list_specs(self):
        return self.tools.list_specs()

    def is_idempotent(self, name):
        return self.tools.is_idempotent(name)

    def execute(self, call, *, ctx):
        self.clock.advance(self.seconds)
        return self.tools.execute(call, ctx=ctx)


def test_scripted_model_calls_two_tools_then_answers():
    tools = standard_tools()
    model = ScriptedModel(
        [
            calls(("weather", {"city": "Oslo"}), text="I need the weather first."),
            calls(("add", {"a": 2, "b": 3})),
            answer("21°C in Oslo, and 2 + 3 = 5."),
        ]
    )
    events, store, clock = ListEventSink(), InMemoryCheckpointStore(), FakeClock()
    outcome = run_turn(
        turn_id="t1",
        user_message="Weather in Oslo, and 2+3?",
        system_prompt="You are helpful.",
        history=[Message(role="user", content="hi"), Message(role="assistant", content="hello")],
        model=model,
        tools=SlowTools(tools, clock, 0.25),
        events=events,
        checkpoints=store,
        clock=clock,
    )

    assert outcome.status == "completed"
    assert outcome.final_answer == "21°C in Oslo, and 2 + 3 = 5."
    # Each tool ran once, in order, with a deterministic idempotency key.
    assert tools.calls == [
        ("weather", {"city": "Oslo"}, "t1:0:0"),
        ("add", {"a": 2, "b": 3}, "t1:1:0"),
    ]

    first, second, third = model.requests
    assert [m.role for m in first.messages] == ["system", "user", "assistant", "user"]
    assert first.messages[-1].content == "Weather in Oslo, and 2+3?"
    assert [t.name for t in first.tools] == ["add", "weather"]
    assert first.response_schema is None
    # Each observation is fed back as a tool message answering the model's call.
    weather_call = second.messages[-2].tool_calls[0]
    assert second.messages[-1] == Message(
        role="tool",
        content=json.dumps({"city": "Oslo", "temp_c": 21}),
        tool_call_id=weather_call.id,
        name="weather",
    )
    assert third.messages[-1].content == "5"
    assert third.messages[: len(second.messages)] == second.messages

    assert events.types() == [
        "turn.started",
        "model.called",
        "step.rationale",
        "tool.call",
        "tool.result",
        "model.called",
        "tool.call",
        "tool.result",
        "model.called",
        "turn.completed",
    ]
    assert all(payload["turn_id"] == "t1" for _, payload in events.events)
    assert events.of_type("tool.result")[0]["latency_ms"] == 250
    assert events.of_type("turn.completed")[0]["output_tokens"] == 15
    assert outcome.usage == Usage(input_tokens=30, output_tokens=15)


def test_every_step_is_a_checkpointed_node_of_the_action_graph():
    model = ScriptedModel(
        [calls(("weather", {"city": "Oslo"}), ("add", {"a": 1, "b": 1})), answer("done")]
    )
    store = InMemoryCheckpointStore()
    outcome = run_turn(
        turn_id="t1", user_message="go", model=model, tools=standard_tools(), checkpoints=store
    )

    graph = {r.node_id: (r.kind, r.status, r.parents) for r in outcome.steps}
    assert graph == {
        "t1:0:model:0": ("model_call", "completed", ()),
        "t1:0:0": ("tool_call", "completed", ("t1:0:model:0",)),
        "t1:0:0:obs": ("observation", "completed", ("t1:0:0",)),
        "t1:0:1": ("tool_call", "completed", ("t1:0:model:0",)),
        "t1:0:1:obs": ("observation", "completed", ("t1:0:1",)),
        # The next model call depends on every observation of the previous step.
        "t1:1:model:0": ("model_call", "completed", ("t1:0:0:obs", "t1:0:1:obs")),
    }
    assert list(store.load("t1")) == list(outcome.steps)
    # The "started" marker is written before each tool runs, then replaced once the call's
    # observation is saved (a store may write the two together).
    assert store.log[1:4] == [
        ("started", "t1:0:0", "started"),
        ("save", "t1:0:0:obs", "completed"),
        ("finished", "t1:0:0", "completed"),
    ]
    tool = next(r for r in outcome.steps if r.node_id == "t1:0:1")
    assert tool.inputs["arguments"] == {"a": 1, "b": 1}
    assert tool.outputs["output"] == 2
    model_node = outcome.steps[0]
    assert (model_node.input_tokens, model_node.output_tokens) == (10, 5)


def test_private_thought_stays_in_the_scratchpad():
    thought = "Look up the weather. The user's password is hunter2, so don't mention it."
    model = ScriptedModel(
        [json_action("weather", {"city": "Oslo"}, thought=thought), json_final("21°C")]
    )
    events = ListEventSink()
    outcome = run_turn(
        turn_id="t1",
        user_message="weather?",
        model=model,
        tools=standard_tools(),
        events=events,
        config=LoopConfig(json_steps=True),
    )
    assert events.of_type("step.rationale")[0]["rationale"] == "Look up the weather."
    assert "hunter2" not in json.dumps([p for _, p in events.events], ensure_ascii=False)
    node = outcome.steps[0]
    assert "hunter2" not in json.dumps(node.outputs)
    assert node.scratchpad["thought"] == thought


def test_json_step_mode_constrains_output_and_feeds_observations_as_text():
    tools = standard_tools()
    model = ScriptedModel([json_action("add", {"a": 2, "b": 2}), json_final("4")])
    outcome = run_turn(
        turn_id="t1",
        user_message="2+2?",
        system_prompt="Be brief.",
        model=model,
        tools=tools,
        config=LoopConfig(json_steps=True),
    )
    assert outcome.final_answer == "4"
    first, second = model.requests
    # No native tools: the schema constrains the output, the prompt describes the tools.
    assert first.tools == ()
    assert first.response_schema == build_step_schema(tools.list_specs())
    assert first.messages[0].content.startswith("Be brief.")
    assert "- weather: Current weather." in first.messages[0].content
    assert second.messages[-1] == Message(
        role="user", content="Observation from add: 4", name=FEEDBACK_NAME
    )
    assert second.messages[-2].role == "assistant"
    assert second.messages[-2].tool_calls == ()


def test_tool_failure_is_observed_by_the_model_and_the_turn_goes_on():
    tools = standard_tools().add("flaky", lambda: 1 / 0, input_schema={"type": "object"})
    model = ScriptedModel([calls(("flaky", {})), answer("flaky is broken")])
    events = ListEventSink()
    outcome = run_turn(turn_id="t1", user_message="x", model=model, tools=tools, events=events)
    assert outcome.status == "completed"
    assert model.requests[1].messages[-1].content == "error: ZeroDivisionError: division by zero"
    assert events.of_type("tool.result")[0]["ok"] is False
    assert next(r for r in outcome.steps if r.node_id == "t1:0:0").status == "error"


def test_large_tool_output_is_truncated_for_the_model_but_kept_in_the_record():
    tools = standard_tools().add("dump", lambda: "x" * 50, input_schema={"type": "object"})
    model = ScriptedModel([calls(("dump", {})), answer("ok")])
    outcome = run_turn(
        turn_id="t1",
        user_message="x",
        model=model,
        tools=tools,
        config=LoopConfig(max_observation_chars=10),
    )
    assert model.requests[1].messages[-1].content == "x" * 10 + "… [truncated, 40 more characters]"
    assert next(r for r in outcome.steps if r.node_id == "t1:0:0").outputs["output"] == "x" * 50


def test_max_steps_ends_the_turn_with_a_clear_outcome():
    tools = standard_tools()
    model = ScriptedModel([calls(("add", {"a": i, "b": 1})) for i in range(10)])
    events = ListEventSink()
    outcome = run_turn(
        turn_id="t1",
        user_message="loop forever",
        model=model,
        tools=tools,
        events=events,
        config=LoopConfig(max_steps=3),
    )
    assert outcome.status == "max_steps_exceeded"
    assert outcome.final_answer is None
    assert len(model.requests) == 3
    assert tools.count("add") == 3
    assert events.of_type("turn.failed") == [
        {
            "turn_id": "t1",
            "status": "max_steps_exceeded",
            "reason": "max_steps_exceeded",
            "detail": "no final answer after 3 steps",
        }
    ]


def test_provider_error_fails_the_turn_and_releases_the_reservation():
    budget = FixedBudget(limit=100_000)
    events = ListEventSink()
    outcome = run_turn(
        turn_id="t1",
        user_message="x",
        model=ScriptedModel([ProviderUnavailable("all endpoints returned 503")]),
        tools=standard_tools(),
        budget=budget,
        events=events,
    )
    assert outcome.status == "failed"
    assert outcome.reason == "provider_error"
    assert "503" in outcome.detail
    assert budget.reserved == {}
    assert budget.settled[0][1] == Usage()
    assert events.of_type("turn.failed")[0]["reason"] == "provider_error"
    assert outcome.steps[0].status == "failed"
