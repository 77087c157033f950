"""Token counts per model: OpenAI's own BPE offline, the scripted model's own count, else the
documented estimate — one interface (apps/llm/tokens.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from apps.llm.providers.base import EndpointConfig
from apps.llm.providers.scripted import ScriptedProvider
from apps.llm.tokens import (
    EstimateCounter,
    count_messages,
    counter_for,
    counter_for_model,
    counter_named,
)
from apps.llm.types import Message, ModelRequest
from tests.llm.servers import LOOPBACK

# The OpenAI cookbook's example ("How to count tokens with tiktoken"): the API reported 129
# prompt tokens for it on gpt-3.5-turbo / gpt-4 (cl100k_base), and 124 on gpt-4o (o200k_base).
COOKBOOK = [
    Message(
        role="system",
        content="You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    ),
    Message(
        role="system",
        name="example_user",
        content="New synergies will help drive top-line growth.",
    ),
    Message(
        role="system",
        name="example_assistant",
        content="Things working well together will increase revenue.",
    ),
    Message(
        role="system",
        name="example_user",
        content="Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    ),
    Message(
        role="system",
        name="example_assistant",
        content="Let's talk later when we're less busy about how to do better.",
    ),
    Message(
        role="user",
        content="This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    ),
]


@pytest.mark.parametrize(
    ("model", "encoding", "tokens"),
    [
        ("gpt-4", "cl100k_base", 129),
        ("gpt-3.5-turbo", "cl100k_base", 129),
        ("gpt-4o", "o200k_base", 124),
        ("gpt-4o-mini", "o200k_base", 124),
    ],
)
def test_openai_models_count_as_the_api_does_offline(
    model: str, encoding: str, tokens: int
) -> None:
    counter = counter_for_model(kind="openai", model=model)
    assert (counter.name, counter.exact) == (encoding, True)
    assert count_messages(counter, COOKBOOK) == tokens


def test_newer_and_gateway_named_openai_models_get_their_encoding() -> None:
    for model in ("gpt-4.1-mini", "gpt-5", "o3-mini", "openai/gpt-4o", "GPT-4O-2024-08-06"):
        assert counter_for_model(kind="openai", model=model).name == "o200k_base", model
    assert counter_named("cl100k_base").count("tiktoken is great!") == 6  # the cookbook's


def test_special_token_text_is_counted_as_text() -> None:
    counter = counter_named("o200k_base")
    assert counter.count("<|endoftext|>") > 1  # not one special token, and no error


def test_an_endpoint_can_name_its_tokenizer() -> None:
    # An OpenAI-compatible server (vLLM, Ollama) whose model name says nothing.
    vllm = EndpointConfig(
        name="vllm", kind="openai", model="my-finetune", options={"tokenizer": "cl100k_base"}
    )
    assert counter_for(vllm).name == "cl100k_base"
    forced = EndpointConfig(
        name="o", kind="openai", model="gpt-4o", options={"tokenizer": "estimate"}
    )
    assert counter_for(forced).name == "estimate"
    # A typo falls back to the estimate rather than breaking the endpoint's turns.
    typo = EndpointConfig(name="t", kind="openai", model="x", options={"tokenizer": "o200k"})
    assert counter_for(typo).name == "estimate"


@pytest.mark.parametrize(
    ("kind", "model"),
    [("anthropic", "claude-3-5-haiku"), ("local", "smollm2"), ("openai", "llama3")],
)
def test_models_without_an_offline_tokenizer_get_the_estimate(kind: str, model: str) -> None:
    counter = counter_for_model(kind=kind, model=model)
    assert (counter.name, counter.exact) == ("estimate", False)
    # One token per 3 bytes of UTF-8, rounded up: above what BPE tokenizers count on prose.
    assert counter.count("abcdefg") == 3
    assert counter.count("é") == 1
    exact = counter_named("o200k_base")
    prose = " ".join(m.content for m in COOKBOOK)
    assert counter.count(prose) > exact.count(prose)


def test_the_scripted_model_counts_as_it_reports_usage() -> None:
    endpoint = EndpointConfig(name="s", kind="scripted", model="scripted")
    counter = counter_for(endpoint)
    assert (counter.name, counter.exact) == ("scripted", True)
    messages = (Message(role="user", content="How many tokens is this sentence, exactly?"),)
    response = ScriptedProvider(endpoint, script=[{"final": "ok"}]).complete(
        ModelRequest(messages=messages)
    )
    assert counter.count(messages[0].content) == response.usage.input_tokens


def test_no_endpoint_is_estimated() -> None:
    assert isinstance(counter_for(None), EstimateCounter)


class TokenizeServer:
    """llama.cpp's `POST /tokenize` on loopback, with a word-level "model": one token per
    whitespace-separated word. Records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.asked.append((self.path, body))
                if self.path != "/tokenize":
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps({"tokens": list(range(len(body["content"].split())))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def tokenize_server() -> Iterator[TokenizeServer]:
    server = TokenizeServer()
    yield server
    server.stop()


def test_the_local_model_counts_with_its_own_tokenizer(tokenize_server: TokenizeServer) -> None:
    local = EndpointConfig(
        name="local",
        kind="local",
        model="smollm2",
        base_url=tokenize_server.base_url,
        egress=LOOPBACK,
    )
    counter = counter_for(local)
    assert (counter.name, counter.exact) == ("llama.cpp", True)
    assert counter.count("one two three four") == 4
    assert counter.count("one two three four") == 4  # cached: asked once
    assert tokenize_server.asked == [
        ("/tokenize", {"content": "one two three four", "add_special": False})
    ]


def test_an_unreachable_tokenizer_falls_back_to_the_estimate(
    tokenize_server: TokenizeServer,
) -> None:
    counter = counter_for(
        EndpointConfig(
            name="local",
            kind="local",
            model="smollm2",
            base_url=tokenize_server.base_url,
            egress=LOOPBACK,
        )
    )
    tokenize_server.stop()
    assert counter.count("one two three four") == EstimateCounter().count("one two three four")
    assert counter.exact is False


def test_the_tokenizer_is_reached_only_where_egress_allows(
    tokenize_server: TokenizeServer,
) -> None:
    # An endpoint under the strict policy (public addresses only) can't be pointed at loopback
    # to probe it: nothing is sent, and the count is the estimate.
    counter = counter_for(
        EndpointConfig(name="local", kind="local", model="m", base_url=tokenize_server.base_url)
    )
    assert counter.count("one two") == EstimateCounter().count("one two")
    assert tokenize_server.asked == [] and counter.exact is False
