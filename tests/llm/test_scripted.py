"""The scripted model: deterministic from the history, selectable by configuration."""

from __future__ import annotations

import json

import pytest

from apps.llm.providers import build_provider
from apps.llm.providers.base import EndpointConfig, MalformedOutput
from apps.llm.providers.scripted import (
    ScriptedProvider,
    demo_script,
    validate_script,
)
from apps.llm.router import ModelRouter
from apps.llm.types import (
    FEEDBACK_NAME,
    Message,
    ModelRequest,
    ProviderTimeout,
    ToolCall,
    ToolSpec,
)

SCRIPT = [
    {"tool": "search", "arguments": {"q": "${last_user_message}"}, "say": "Searching."},
    {"tool": "fetch", "arguments": {"url": "https://x.test/${step}", "raw": 3}},
    {"final": "Found: ${tool_result_1} / ${last_tool_result}"},
]


def scripted(script=SCRIPT, name: str = "scripted") -> ScriptedProvider:
    return ScriptedProvider(
        EndpointConfig(name=name, kind="scripted", model="script", options={"script": script})
    )


def request(*messages: Message) -> ModelRequest:
    return ModelRequest(messages=(Message("system", "sys"), *messages))


def run_turn(provider: ScriptedProvider, history: list[Message], user_text: str) -> list[object]:
    """Drive one turn the way the loop does; tool results echo the call."""
    history.append(Message("user", user_text))
    outputs: list[object] = []
    while True:
        response = provider.complete(request(*history))
        outputs.append(response)
        history.append(Message("assistant", response.text, tool_calls=response.tool_calls))
        if not response.tool_calls:
            return outputs
        for call in response.tool_calls:
            history.append(
                Message("tool", f"{call.name}-result", tool_call_id=call.id, name=call.name)
            )


def test_walks_the_script_and_templates_the_final_answer():
    history: list[Message] = []

    outputs = run_turn(scripted(), history, "weather in Oslo")

    first, second, final = outputs
    assert first.text == "Searching."
    assert first.tool_calls[0].name == "search"
    assert first.tool_calls[0].arguments == {"q": "weather in Oslo"}
    assert second.tool_calls[0].arguments == {"url": "https://x.test/1", "raw": 3}
    assert final.tool_calls == ()
    assert final.text == "Found: search-result / fetch-result"
    assert (first.finish_reason, final.finish_reason) == ("tool_calls", "stop")


def test_same_history_gives_the_same_step_in_a_fresh_instance():
    history = [
        Message("user", "go"),
        Message("assistant", "", tool_calls=(ToolCall("c", "search", {"q": "go"}),)),
        Message("tool", "r", tool_call_id="c"),
    ]

    # Two independent instances (as two processes, or after a crash-resume).
    a = scripted().complete(request(*history))
    b = scripted().complete(request(*history))

    assert a == b
    assert a.tool_calls[0].name == "fetch"
    assert a.tool_calls[0].id.startswith("call_")


def test_a_new_user_message_starts_the_script_again_with_new_call_ids():
    provider = scripted()
    history: list[Message] = []
    first_turn = run_turn(provider, history, "same words")
    second_turn = run_turn(provider, history, "same words")

    assert [len(first_turn), len(second_turn)] == [3, 3]
    assert second_turn[0].tool_calls[0].name == "search"
    assert first_turn[0].tool_calls[0].id != second_turn[0].tool_calls[0].id


def test_loop_feedback_does_not_restart_and_malformed_step_is_reported():
    provider = scripted(
        [
            {"tool": "search", "raw_arguments": '{"q": '},
            {"tool": "search", "arguments": {"q": "fixed"}},
            {"final": "done"},
        ]
    )
    history = [Message("user", "find it")]

    with pytest.raises(MalformedOutput) as caught:
        provider.complete(request(*history))
    assert caught.value.response.tool_calls == ()
    assert json.loads(caught.value.response.raw_text)["tool_calls"][0]["arguments"] == '{"q": '
    assert caught.value.response.usage.output_tokens > 0

    # The loop re-prompts: the rejected output plus a validation message.
    history += [
        Message("assistant", caught.value.response.raw_text),
        Message("user", "Your tool call was not valid JSON.", name=FEEDBACK_NAME),
    ]
    retry = provider.complete(request(*history))

    assert retry.tool_calls[0].arguments == {"q": "fixed"}


def test_final_answer_is_streamed_token_by_token():
    provider = scripted([{"final": "The  answer is\n42."}])
    tokens: list[str] = []

    response = provider.complete(request(Message("user", "q")), on_token=tokens.append)

    assert len(tokens) > 1
    assert "".join(tokens) == response.text == "The  answer is\n42."


def test_running_past_the_end_repeats_the_final_answer():
    provider = scripted([{"tool": "a", "arguments": {}}, {"final": "bye"}])
    history = [Message("user", "x")] + [Message("assistant", "") for _ in range(5)]

    assert provider.complete(request(*history)).text == "bye"


def test_scripted_errors_drive_router_failover():
    flaky = EndpointConfig(
        name="flaky", kind="scripted", model="s", options={"script": [{"error": "timeout"}]}
    )
    steady = EndpointConfig(
        name="steady", kind="scripted", model="s", options={"script": [{"final": "ok"}]}
    )
    with pytest.raises(ProviderTimeout):
        build_provider(flaky).complete(request(Message("user", "x")))

    router = ModelRouter([flaky, steady])
    response = router.complete(request(Message("user", "x")), tier="small", sensitivity="internal")

    assert (response.endpoint, response.text) == ("steady", "ok")


def test_script_is_selected_by_endpoint_configuration():
    config = EndpointConfig(
        name="demo-scripted",
        kind="scripted",
        model="script",
        options={"script": [{"final": "configured ${last_user_message}"}]},
    )

    response = build_provider(config).complete(request(Message("user", "hello")))

    assert response.text == "configured hello"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0


@pytest.mark.parametrize(
    "bad",
    [
        "not a list",
        [{"nothing": 1}],
        [{"tool": "a", "final": "b"}],
        [{"calls": []}],
        [{"tool": "a", "arguments": "x"}],
        [{"error": "explode"}],
    ],
)
def test_invalid_scripts_are_rejected(bad):
    with pytest.raises(ValueError):
        validate_script(bad)


TIME_TOOL = ToolSpec(
    "get_current_time",
    "Current time in a timezone",
    {
        "type": "object",
        "properties": {"timezone": {"type": "string"}},
        "required": ["timezone"],
    },
)
NOTE_TOOL = ToolSpec(
    "write_note",
    "Write a note",
    {
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "priority": {"type": "integer", "minimum": 2},
            "kind": {"enum": ["memo", "todo"]},
            "tags": {"type": "array"},
        },
        "required": ["text", "priority", "kind"],
    },
)


def test_demo_script_calls_the_offered_tools_then_answers():
    provider = ScriptedProvider(EndpointConfig(name="demo", kind="scripted", model="demo"))
    history = [Message("user", "remember the meeting")]

    first = provider.complete(ModelRequest(messages=tuple(history), tools=(TIME_TOOL, NOTE_TOOL)))
    assert first.tool_calls[0].name == "get_current_time"
    assert first.tool_calls[0].arguments == {"timezone": "UTC"}
    history += [
        Message("assistant", first.text, tool_calls=first.tool_calls),
        Message("tool", "12:00 UTC", tool_call_id=first.tool_calls[0].id),
    ]

    second = provider.complete(ModelRequest(messages=tuple(history), tools=(TIME_TOOL, NOTE_TOOL)))
    assert second.tool_calls[0].name == "write_note"
    assert second.tool_calls[0].arguments == {
        "text": "remember the meeting",
        "priority": 2,
        "kind": "memo",
    }
    history += [
        Message("assistant", second.text, tool_calls=second.tool_calls),
        Message("tool", "note saved", tool_call_id=second.tool_calls[0].id),
    ]

    final = provider.complete(ModelRequest(messages=tuple(history), tools=(TIME_TOOL, NOTE_TOOL)))
    assert final.tool_calls == ()
    assert "12:00 UTC" in final.text and "note saved" in final.text


def test_demo_script_without_tools_answers_directly():
    steps = demo_script(ModelRequest(messages=(Message("user", "hi"),)))
    assert steps == [{"final": "(scripted demo) You said: ${last_user_message}"}]
