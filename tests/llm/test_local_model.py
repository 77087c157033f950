"""The embedded local model through llama.cpp's server (heavy: marked `llm`).

Skipped, loudly, when llama-cpp-python or the model wheel is not installed
(`make install-llm`). What it proves: a tiny model behind the grammar-constrained
`response_format` emits a step that validates against the loop's JSON Schema.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from apps.agents import orchestrator
from apps.agents.demo import (
    LOCAL_AGENT_MAX_STEPS,
    LOCAL_AGENT_PROMPT,
    LOCAL_AGENT_TOOLS,
    LOCAL_ENDPOINT_OPTIONS,
)
from apps.agents.models import ActionNode, SessionEvent, TurnStatus
from apps.agents.runtime.steps import build_step_schema, render_tool_instructions
from apps.agents.services import agent_save, session_create, turn_enqueue
from apps.llm.local_models import CHAT_FORMATS, LocalModelSupervisor, gguf_path
from apps.llm.models import EndpointState
from apps.llm.providers.local_llama import (
    LocalLlamaProvider,
    llama_server_available,
    local_endpoint,
    server_command,
)
from apps.llm.services import endpoint_save, endpoint_state_set
from apps.llm.types import Message, ModelRequest, ToolSpec
from devtools.embedded import free_port
from tests.conftest import World
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
    # Streamed, in order (the text may differ from the tokens only by the escaping of raw
    # control characters, which strict_json_text adds).
    assert json.loads("".join(tokens), strict=False) == step
    assert response.usage.output_tokens > 0 or tokens


@pytest.mark.django_db(transaction=True)
def test_the_local_agent_answers_17_times_23_with_the_calculator(
    local_server: int, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The turn runs here, in-process, not on a worker.
    monkeypatch.setattr("apps.agents.services.turn_dispatch", lambda **_: None)
    monkeypatch.setattr("apps.agents.orchestrator.turn_dispatch", lambda **_: None)
    endpoint = endpoint_save(
        tenant=world.tenant_a,
        name="local-model",
        provider="local",
        model=MODEL,
        base_url=f"http://127.0.0.1:{local_server}/v1",
        supports_tools=False,
        supports_json_schema=True,
        timeout_s=120.0,
        options=LOCAL_ENDPOINT_OPTIONS,  # as the demo seeds the local endpoint
    )
    agent = agent_save(
        tenant=world.tenant_a,
        name="Local",
        slug="local-assistant",
        system_prompt=LOCAL_AGENT_PROMPT,
        allowed_tools=LOCAL_AGENT_TOOLS,
        max_steps=LOCAL_AGENT_MAX_STEPS,
        allowed_endpoints=[endpoint],
    )
    turn = turn_enqueue(
        session=session_create(tenant=world.tenant_a, agent=agent, user=None),
        message="What is 17 times 23?",
    )
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()

    malformed = SessionEvent.objects.filter(turn=turn, type="step.malformed")
    assert not any("control character" in e.payload.get("error", "") for e in malformed)
    calls = ActionNode.objects.filter(turn=turn, kind="tool_call", status="completed")
    assert any((node.outputs.get("output") or {}).get("value") == 391 for node in calls)
    assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
    assert "391" in turn.final_answer


@pytest.mark.django_db(transaction=True)
def test_the_supervisor_serves_the_model_then_stops_it(world: World, tmp_path: Path) -> None:
    if not llama_server_available() or gguf_path(MODEL, cache_dir=Path("var/models")) is None:
        pytest.skip("LOCAL LLM TESTS SKIPPED: llama.cpp or the model is not installed")
    port = free_port()
    endpoint = endpoint_save(
        tenant=world.tenant_a,
        name="local-model",
        provider="local",
        model=MODEL,
        base_url=f"http://127.0.0.1:{port}/v1",
        supports_tools=False,
        supports_json_schema=True,
    )
    endpoint_state_set(endpoint=endpoint, state=EndpointState.STARTING, detail="seeded")
    stop = threading.Event()
    states: list[str] = []
    supervisor = LocalModelSupervisor(
        model=MODEL,
        port=port,
        var_dir=tmp_path,
        stop=stop,
        on_state=lambda state, detail: states.append(state),
    )
    runner = threading.Thread(target=supervisor.run)
    runner.start()
    try:
        while "ready" not in states:
            assert runner.is_alive() and "failed" not in states, tmp_path / "local-llm.log"
            stop.wait(0.2)
        endpoint.refresh_from_db()
        assert endpoint.state == EndpointState.READY
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10)
        assert models.json()["data"][0]["id"] == MODEL
    finally:
        stop.set()
        runner.join(30)
    assert states == ["starting", "ready", "off"]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
    endpoint.refresh_from_db()
    assert endpoint.state == EndpointState.OFF
