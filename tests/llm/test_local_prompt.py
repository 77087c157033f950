"""What the embedded local model is shown: the loop's JSON-step transcript retold in plain words
and a step grammar narrowed for a tiny model, for the local provider only (fast, no model)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from apps.agents.runtime.steps import build_step_schema
from apps.llm.providers.local_llama import LocalLlamaProvider, local_endpoint
from apps.llm.providers.local_prompt import plain_history, shape_step_schema
from apps.llm.providers.openai_compat import OpenAICompatProvider
from apps.llm.types import (
    FEEDBACK_NAME,
    Message,
    ModelRequest,
    ToolSpec,
    observation_message,
    read_observation,
)
from tests.llm.servers import LOOPBACK, completion, reply

CALCULATOR = ToolSpec(
    name="calculator",
    description="Evaluate an arithmetic expression.",
    input_schema={
        "type": "object",
        "properties": {"expression": {"type": "string", "maxLength": 200}},
        "required": ["expression"],
    },
)
WORD_COUNT = ToolSpec(
    name="word_count",
    description="Count the words in a text.",
    input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
)
EXPRESSION = r"^[0-9(][0-9 +*/().-]*$"
ACTION = {"thought": "", "action": {"tool": "calculator", "arguments": {"expression": "17 * 23"}}}
RESULT = json.dumps({"expression": "17 * 23", "value": 391})


def turn_after_the_tool_answered() -> tuple[Message, ...]:
    """The messages the loop sends for the second step of "What is 17 times 23?"."""
    return (
        Message(role="system", content="You are a helpful assistant."),
        Message(role="user", content="What is 17 times 23?"),
        Message(role="assistant", content=json.dumps(ACTION)),
        observation_message("calculator", RESULT),
    )


def step_request(**overrides: Any) -> ModelRequest:
    values: dict[str, Any] = {
        "messages": turn_after_the_tool_answered(),
        "response_schema": build_step_schema([CALCULATOR]),
    }
    values.update(overrides)
    return ModelRequest(**values)


def test_the_history_is_retold_in_plain_words():
    told = plain_history(turn_after_the_tool_answered())

    assert [m.content for m in told] == [
        "You are a helpful assistant.",
        "What is 17 times 23?",
        "I called the calculator tool with expression 17 * 23.",
        "The calculator tool returned expression 17 * 23, value 391. "
        "Answer the user now with final_answer.",
    ]
    assert told[3].role == "user" and told[3].name == FEEDBACK_NAME


def test_an_earlier_answer_is_its_text_and_anything_else_is_left_alone():
    messages = (
        Message(role="assistant", content=json.dumps({"thought": "", "final_answer": "391"})),
        # A malformed reply echoed back for correction, and the re-prompt after it.
        Message(role="assistant", content='{"thought": "oops'),
        Message(role="user", content="Your previous reply was rejected", name=FEEDBACK_NAME),
        observation_message("calculator", "error: division by zero"),
        # The end user may type the same words; only the loop's own message is an observation.
        Message(role="user", content="Observation from calculator: 5"),
    )

    told = plain_history(messages)

    assert told[0].content == "391"
    assert told[1:3] == messages[1:3]
    assert told[3].content == (
        "The calculator tool returned error: division by zero. "
        "Answer the user now with final_answer."
    )
    assert told[4] == messages[4]
    assert read_observation(messages[4]) is None


def test_the_step_grammar_is_narrowed_for_a_small_model():
    schema = build_step_schema([CALCULATOR])

    shaped = shape_step_schema(
        schema,
        thought_max_chars=0,
        argument_patterns={"calculator": {"expression": EXPRESSION}},
        answer_max_chars=200,
    )

    final, action = shaped["oneOf"]
    assert final["properties"]["thought"]["maxLength"] == 0
    assert action["properties"]["thought"]["maxLength"] == 0
    arguments = action["properties"]["action"]["properties"]["arguments"]["properties"]
    assert arguments["expression"]["pattern"] == EXPRESSION
    answer = re.compile(final["properties"]["final_answer"]["pattern"])
    assert answer.match("391") and answer.match('He said \\"hi\\"')
    assert not answer.match("42 }. The calculator returned")  # the step "closed" inside it
    assert not answer.match("42\nThe calculator returned")
    assert not answer.match("4" * 201)
    assert "maxLength" not in schema["oneOf"][0]["properties"]["thought"]  # a copy was shaped


def test_an_unbounded_string_argument_gets_a_bound():
    schema = build_step_schema([CALCULATOR, WORD_COUNT])

    shaped = shape_step_schema(
        schema, thought_max_chars=None, argument_patterns={}, argument_max_chars=120
    )

    calculator, word_count = (
        branch["properties"]["action"]["properties"]["arguments"]["properties"]
        for branch in shaped["oneOf"][1:]
    )
    assert calculator["expression"]["maxLength"] == 200  # its own bound stays
    assert word_count["text"]["maxLength"] == 120


def test_the_local_provider_sends_the_shaped_turn(make_server):
    server = make_server(reply(completion('{"thought": "", "final_answer": "391"}')))
    endpoint = local_endpoint(port=server.port, egress=LOOPBACK)
    endpoint = replace(
        endpoint, options={"argument_patterns": {"calculator": {"expression": EXPRESSION}}}
    )

    LocalLlamaProvider(endpoint).complete(step_request())

    body = server.bodies[0]
    assert body["messages"][2:] == [
        {"role": "assistant", "content": "I called the calculator tool with expression 17 * 23."},
        {
            "role": "user",
            "content": "The calculator tool returned expression 17 * 23, value 391. "
            "Answer the user now with final_answer.",
        },
    ]
    final, action = body["response_format"]["schema"]["oneOf"]
    assert final["properties"]["thought"]["maxLength"] == 0
    assert "pattern" in final["properties"]["final_answer"]
    arguments = action["properties"]["action"]["properties"]["arguments"]["properties"]
    assert arguments["expression"]["pattern"] == EXPRESSION
    # llama-cpp-python's default (1.1) penalises the digits the tool has just returned.
    assert body["repeat_penalty"] == 1.0


def test_the_local_provider_shaping_can_be_switched_off(make_server):
    server = make_server(reply(completion('{"thought": "", "final_answer": "391"}')))
    options = {"plain_history": False, "thought_max_chars": None, "answer_max_chars": None}
    endpoint = replace(local_endpoint(port=server.port, egress=LOOPBACK), options=options)
    request = step_request()

    LocalLlamaProvider(endpoint).complete(request)

    body = server.bodies[0]
    assert body["messages"][2]["content"] == json.dumps(ACTION)
    assert body["response_format"]["schema"] == request.response_schema


def test_other_providers_get_the_loop_s_messages_and_schema_as_they_are(make_server):
    server = make_server(reply(completion('{"thought": "", "final_answer": "391"}')))
    endpoint = replace(
        local_endpoint(port=server.port, egress=LOOPBACK), kind="openai", name="compat"
    )
    request = step_request()

    OpenAICompatProvider(endpoint).complete(request)

    body = server.bodies[0]
    assert body["messages"][2]["content"] == json.dumps(ACTION)
    assert body["messages"][3]["content"] == f"Observation from calculator: {RESULT}"
    assert body["response_format"]["json_schema"]["schema"] == request.response_schema
    assert "repeat_penalty" not in body
