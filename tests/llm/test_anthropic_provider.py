"""The Anthropic provider, through the real `anthropic` SDK, against a local server."""

from __future__ import annotations

import pytest

from apps.llm.providers.anthropic_provider import AnthropicProvider
from apps.llm.providers.base import EndpointConfig, MalformedOutput
from apps.llm.types import (
    Message,
    ModelRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ToolCall,
    ToolSpec,
)
from tests.llm.servers import LOOPBACK, anthropic_message, anthropic_sse, error, hang, reply

WEATHER = ToolSpec(
    "weather",
    "Weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def endpoint(root: str, **overrides: object) -> EndpointConfig:
    values: dict[str, object] = {
        "name": "claude",
        "kind": "anthropic",
        "model": "claude-fake",
        "base_url": root,
        "api_key": "ak-secret",
        "timeout_s": 5.0,
        "egress": LOOPBACK,
    }
    values.update(overrides)
    return EndpointConfig(**values)  # type: ignore[arg-type]


def test_text_answer_with_system_prompt_sent_separately(make_server):
    server = make_server(reply(anthropic_message([{"type": "text", "text": "Bonjour."}])))
    provider = AnthropicProvider(endpoint(server.root))

    response = provider.complete(
        ModelRequest(
            messages=(
                Message("system", "Answer in French."),
                Message("system", "Be brief."),
                Message("user", "Hello"),
            ),
            max_output_tokens=50,
            temperature=0.1,
        )
    )

    assert (response.text, response.finish_reason, response.endpoint) == (
        "Bonjour.",
        "stop",
        "claude",
    )
    assert (response.usage.input_tokens, response.usage.output_tokens) == (21, 9)
    sent = server.received[0]
    assert sent.path == "/v1/messages"
    # anthropic 2.x sends the API key as a bearer token (not x-api-key).
    assert sent.headers["authorization"] == "Bearer ak-secret"
    assert sent.headers["anthropic-version"]
    assert sent.body["system"] == "Answer in French.\n\nBe brief."
    assert sent.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]}
    ]
    assert sent.body["max_tokens"] == 50
    assert "temperature" not in sent.body  # not a parameter of the 2.x SDK
    assert "stream" not in sent.body


def test_tool_use_round_trip(make_server):
    server = make_server(
        reply(
            anthropic_message(
                [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "tu_2",
                        "name": "weather",
                        "input": {"city": "Rome"},
                    },
                ],
                stop_reason="tool_use",
            )
        )
    )
    history = (
        Message("user", "Weather in Oslo and Rome?"),
        Message("assistant", "", tool_calls=(ToolCall("tu_1", "weather", {"city": "Oslo"}),)),
        Message("tool", "Oslo: 3°C", tool_call_id="tu_1"),
    )

    response = AnthropicProvider(endpoint(server.root)).complete(
        ModelRequest(messages=history, tools=(WEATHER,))
    )

    assert response.tool_calls == (ToolCall("tu_2", "weather", {"city": "Rome"}),)
    assert response.text == "Checking."
    assert response.finish_reason == "tool_calls"
    body = server.bodies[0]
    assert body["tools"] == [
        {
            "name": "weather",
            "description": "Weather for a city",
            "input_schema": WEATHER.input_schema,
        }
    ]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"city": "Oslo"}}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "Oslo: 3°C"}],
        },
    ]


def test_parallel_tool_results_share_one_user_message(make_server):
    server = make_server(reply(anthropic_message([{"type": "text", "text": "ok"}])))
    history = (
        Message("user", "both"),
        Message(
            "assistant",
            "",
            tool_calls=(ToolCall("a", "weather", {"city": "X"}), ToolCall("b", "weather", {})),
        ),
        Message("tool", "x", tool_call_id="a"),
        Message("tool", "y", tool_call_id="b"),
    )

    AnthropicProvider(endpoint(server.root)).complete(ModelRequest(messages=history))

    last = server.bodies[0]["messages"][-1]
    assert last["role"] == "user"
    assert [block["tool_use_id"] for block in last["content"]] == ["a", "b"]


def test_tool_use_with_non_object_input_is_malformed(make_server):
    server = make_server(
        reply(
            anthropic_message(
                [{"type": "tool_use", "id": "tu", "name": "weather", "input": "Rome"}],
                stop_reason="tool_use",
            )
        )
    )

    with pytest.raises(MalformedOutput) as caught:
        AnthropicProvider(endpoint(server.root)).complete(
            ModelRequest(messages=(Message("user", "x"),))
        )

    assert (caught.value.response.tool_calls, caught.value.response.text) == ((), "")
    assert "Rome" in caught.value.response.raw_text


def test_response_schema_goes_to_output_config(make_server):
    server = make_server(reply(anthropic_message([{"type": "text", "text": "{}"}])))
    schema = {"type": "object", "properties": {"action": {"type": "string"}}}

    AnthropicProvider(endpoint(server.root, supports_json_schema=True)).complete(
        ModelRequest(messages=(Message("user", "x"),), response_schema=schema)
    )

    assert server.bodies[0]["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}
    }


@pytest.mark.parametrize(
    ("status", "expected", "retryable"),
    [
        (529, ProviderUnavailable, True),
        (500, ProviderUnavailable, True),
        (429, ProviderUnavailable, True),
        (400, ProviderError, False),
        (401, ProviderError, False),
    ],
)
def test_http_errors_are_mapped(make_server, status, expected, retryable):
    server = make_server(error(status), error(status))

    with pytest.raises(ProviderError) as caught:
        AnthropicProvider(endpoint(server.root)).complete(
            ModelRequest(messages=(Message("user", "x"),))
        )

    assert type(caught.value) is expected and caught.value.retryable is retryable
    assert len(server.received) == 1


def test_hang_is_a_timeout(make_server):
    server = make_server(hang())

    with pytest.raises(ProviderTimeout):
        AnthropicProvider(endpoint(server.root, timeout_s=0.3)).complete(
            ModelRequest(messages=(Message("user", "x"),))
        )


def test_streaming_delivers_text_deltas(make_server):
    message = anthropic_message([], input_tokens=4, output_tokens=0)
    server = make_server(
        anthropic_sse(
            [
                ("message_start", {"type": "message_start", "message": message}),
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                ),
                *[
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                    )
                    for piece in ["Ciao", ", ", "mondo"]
                ],
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": 3},
                    },
                ),
                ("message_stop", {"type": "message_stop"}),
            ]
        )
    )
    tokens: list[str] = []

    response = AnthropicProvider(endpoint(server.root)).complete(
        ModelRequest(messages=(Message("user", "x"),)), on_token=tokens.append
    )

    assert tokens == ["Ciao", ", ", "mondo"]
    assert response.text == "Ciao, mondo"
    assert response.finish_reason == "stop"
    assert server.bodies[0]["stream"] is True
