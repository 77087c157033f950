"""The embedded local model through llama.cpp's server (heavy: marked `llm`).

Skipped, loudly, when llama-cpp-python or the model wheel is not installed
(`make install-llm`). What it proves: a tiny model behind the grammar-constrained
`response_format` emits a step that validates against the loop's JSON Schema.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from apps.agents.runtime.steps import build_step_schema, render_tool_instructions
from apps.llm.local_models import CHAT_FORMATS, gguf_path
from apps.llm.providers.local_llama import (
    LocalLlamaProvider,
    llama_server_available,
    local_endpoint,
    server_command,
)
from apps.llm.types import Message, ModelRequest, ToolSpec
from config.embedded import free_port
from tests.llm.servers import LOOPBACK

pytestmark = pytest.mark.llm

MODEL = "smollm2"
CALCULATOR = ToolSpec(
    name="calculator",
    description="Evaluate an arithmetic expression.",
    input_schema={
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
        "additionalProperties": False,
    },
)


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if not llama_server_available():
        pytest.skip("LOCAL LLM TESTS SKIPPED: llama-cpp-python is not installed (make install-llm)")
    path = gguf_path(MODEL, cache_dir=Path("var/models"))
    if path is None:
        pytest.skip(f"LOCAL LLM TESTS SKIPPED: the {MODEL} model wheel is not installed")
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    proc = subprocess.Popen(
        server_command(path, port=port, model_alias=MODEL, chat_format=CHAT_FORMATS[MODEL]),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, "llama.cpp server did not start"
        time.sleep(0.2)
    yield port
    proc.terminate()
    proc.wait(10)


def test_grammar_constrained_step_validates_against_the_step_schema(local_server: int) -> None:
    provider = LocalLlamaProvider(
        local_endpoint(port=local_server, model_alias=MODEL, egress=LOOPBACK)
    )
    schema = build_step_schema([CALCULATOR])
    request = ModelRequest(
        messages=(
            Message(role="system", content=render_tool_instructions([CALCULATOR])),
            Message(role="user", content="What is 17 * 23?"),
        ),
        max_output_tokens=200,
        response_schema=schema,
        timeout_s=120,
    )
    tokens: list[str] = []
    response = provider.complete(request, on_token=tokens.append)
    step = json.loads(response.text)
    jsonschema.validate(step, schema)
    assert "".join(tokens) == response.text  # streamed, in order
    assert response.usage.output_tokens > 0 or tokens
