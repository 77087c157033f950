"""The step schema and parser: what counts as a valid step, and what the model is told otherwise."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from apps.agents.runtime.steps import (
    MalformedStep,
    StepParser,
    build_step_schema,
    render_tool_instructions,
    short_rationale,
)
from apps.llm.types import ModelResponse, ToolCall, ToolSpec

from .builders import ADD_SCHEMA, WEATHER_SCHEMA, answer, calls

TOOLS = (
    ToolSpec("add", "Adds two integers.", ADD_SCHEMA),
    ToolSpec("weather", "Current weather.", WEATHER_SCHEMA),
)


def json_parser() -> StepParser:
    return StepParser(TOOLS, json_steps=True)


def test_valid_json_action_step_becomes_a_tool_call():
    text = json.dumps(
        {
            "thought": "I should add. Then answer.",
            "action": {"tool": "add", "arguments": {"a": 2, "b": 3}},
        }
    )
    step = json_parser().parse(answer(text), call_id_prefix="call-4-")
    assert step.final_answer is None
    assert step.tool_calls == (ToolCall(id="call-4-0", name="add", arguments={"a": 2, "b": 3}),)
    assert step.thought == "I should add. Then answer."
    assert step.rationale == "I should add."


def test_valid_json_final_step():
    step = json_parser().parse(answer('{"thought": "Known.", "final_answer": "5"}'))
    assert step.final_answer == "5"
    assert step.tool_calls == ()


def test_json_step_in_a_code_fence_is_accepted():
    step = json_parser().parse(answer('```json\n{"thought": "t", "final_answer": "ok"}\n```'))
    assert step.final_answer == "ok"


def test_unknown_tool_is_malformed_and_names_the_available_tools():
    text = json.dumps({"thought": "t", "action": {"tool": "rm_rf", "arguments": {}}})
    with pytest.raises(MalformedStep) as exc:
        json_parser().parse(answer(text))
    assert "unknown tool 'rm_rf'" in str(exc.value)
    assert "add, weather" in str(exc.value)


def test_arguments_failing_the_input_schema_are_malformed_with_the_path():
    text = json.dumps(
        {"thought": "t", "action": {"tool": "add", "arguments": {"a": "two", "b": 3}}}
    )
    with pytest.raises(MalformedStep) as exc:
        json_parser().parse(answer(text))
    message = str(exc.value)
    assert "invalid arguments for tool 'add'" in message
    assert "$.a: 'two' is not of type 'integer'" in message


def test_missing_required_argument_is_malformed():
    text = json.dumps({"thought": "t", "action": {"tool": "weather", "arguments": {}}})
    with pytest.raises(MalformedStep, match="'city' is a required property"):
        json_parser().parse(answer(text))


def test_non_json_text_is_malformed_in_json_mode():
    with pytest.raises(MalformedStep, match="not valid JSON"):
        json_parser().parse(answer("Sure! The answer is 5."))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"thought": "t"}, "exactly one of 'action' or 'final_answer'"),
        (
            {"thought": "t", "final_answer": "x", "action": {"tool": "add", "arguments": {}}},
            "exactly one of 'action' or 'final_answer'",
        ),
        ({"final_answer": "x"}, "'thought' is a required property"),
        ({"thought": "t", "final_answer": ""}, "should be non-empty"),
        ({"thought": "t", "final_answer": "x", "extra": 1}, "Additional properties"),
        (["a", "list"], "is not of type 'object'"),
    ],
)
def test_envelope_violations_are_malformed(payload, expected):
    with pytest.raises(MalformedStep, match=expected):
        json_parser().parse(answer(json.dumps(payload)))


def test_native_tool_calls_are_validated_against_the_input_schema():
    parser = StepParser(TOOLS)
    step = parser.parse(calls(("weather", {"city": "Oslo"}), text="Checking the weather."))
    assert [c.name for c in step.tool_calls] == ["weather"]
    assert step.rationale == "Checking the weather."
    with pytest.raises(MalformedStep, match="is not of type 'integer'"):
        parser.parse(calls(("add", {"a": 1.5, "b": 2})))
    with pytest.raises(MalformedStep, match="unknown tool 'shell'"):
        parser.parse(calls(("shell", {"cmd": "ls"})))


def test_native_mode_text_is_the_final_answer_and_empty_reply_is_malformed():
    parser = StepParser(TOOLS)
    assert parser.parse(answer("It is 21°C.")).final_answer == "It is 21°C."
    with pytest.raises(MalformedStep, match="empty"):
        parser.parse(ModelResponse(text="  "))


def test_native_tool_calls_without_ids_get_deterministic_ones():
    response = ModelResponse(tool_calls=(ToolCall(id="", name="add", arguments={"a": 1, "b": 2}),))
    step = StepParser(TOOLS).parse(response, call_id_prefix="call-2-")
    assert step.tool_calls[0].id == "call-2-0"


def test_built_schema_agrees_with_the_parser():
    # The schema given to providers (response_format / grammar) must accept what
    # the parser accepts and reject what it rejects.
    validator = Draft202012Validator(build_step_schema(TOOLS))
    Draft202012Validator.check_schema(build_step_schema(TOOLS))
    valid = [
        {"thought": "t", "final_answer": "5"},
        {"thought": "t", "action": {"tool": "add", "arguments": {"a": 1, "b": 2}}},
        {"thought": "t", "action": {"tool": "weather", "arguments": {"city": "Oslo"}}},
    ]
    invalid = [
        {"thought": "t", "action": {"tool": "rm_rf", "arguments": {}}},
        {"thought": "t", "action": {"tool": "add", "arguments": {"a": "1", "b": 2}}},
        {"thought": "t", "action": {"tool": "weather", "arguments": {"town": "Oslo"}}},
        {"thought": "t"},
        {"final_answer": "5"},
    ]
    for doc in valid:
        assert validator.is_valid(doc), doc
        json_parser().parse(answer(json.dumps(doc)))
    for doc in invalid:
        assert not validator.is_valid(doc), doc
        with pytest.raises(MalformedStep):
            json_parser().parse(answer(json.dumps(doc)))


def test_tool_names_in_the_schema_form_an_enum():
    schema = build_step_schema(TOOLS)
    names = [
        branch["properties"]["action"]["properties"]["tool"]["const"]
        for branch in schema["oneOf"]
        if "action" in branch["properties"]
    ]
    assert names == ["add", "weather"]


def test_broken_input_schema_fails_loudly_at_construction():
    with pytest.raises(Exception, match="is not valid"):
        StepParser((ToolSpec("bad", "", {"type": "no-such-type"}),))


def test_tool_instructions_list_every_tool_and_its_schema():
    text = render_tool_instructions(TOOLS)
    assert "- add: Adds two integers." in text
    assert '"required": ["city"]' in text


def test_short_rationale_keeps_only_the_first_sentence_and_caps_length():
    assert short_rationale("Look it up. Secret plan: x") == "Look it up."
    long = "word " * 100
    assert len(short_rationale(long)) <= 160
    assert short_rationale(long).endswith("…")
