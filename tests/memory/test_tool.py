"""The memory_search builtin through the agent loop: it reads the calling tenant's memory
only, the model cites what it found, and an embedder outage shows on the timeline."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apps.agents import orchestrator, services
from apps.agents.models import ActionNode, Agent, SessionEvent, Turn, TurnStatus
from apps.memory import services as memory
from apps.tools import services as tool_services
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World
from tests.memory.embedding_server import EmbeddingServer

# The builtin runs on the executor's thread pool, with its own database connection: the
# rows it reads must be committed.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]

SCRIPT: list[dict[str, Any]] = [
    {"tool": "memory_search", "arguments": {"query": "${last_user_message}", "k": 3}},
    {"final": "From memory: ${tool_result_1}"},
]


def memory_agent(world: World) -> Agent:
    tool_services.tool_register_builtin(tenant=world.tenant_a, name="memory_search", approve=True)
    return make_agent(world.tenant_a, SCRIPT, tools=["memory_search"])


def run(agent: Agent, message: str) -> Turn:
    turn = services.turn_enqueue(session=make_session(agent), message=message)
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    return turn


def test_the_agent_retrieves_its_own_tenants_memory_and_cites_it(world: World) -> None:
    memory.document_ingest(
        tenant=world.tenant_a,
        title="Parking policy",
        text="Visitors park in the north garage, level two. Badges open the gate.",
    )
    # Another tenant's document says the same words, louder.
    memory.document_ingest(
        tenant=world.tenant_b,
        title="Globex secret parking plan",
        text="Where do visitors park? Visitors park in the north garage. Visitors park.",
    )
    turn = run(memory_agent(world), "where do visitors park")

    assert turn.status == TurnStatus.COMPLETED, turn.detail
    (node,) = ActionNode.objects.filter(turn=turn, kind="tool_call")
    results = node.outputs["output"]["results"]
    assert [r["title"] for r in results] == ["Parking policy"]
    assert "north garage" in results[0]["text"]
    assert "Parking policy" in turn.final_answer
    assert "Globex" not in turn.final_answer


def test_an_embedder_outage_is_a_clear_tool_error_and_the_turn_goes_on(
    world: World, embedding_server: EmbeddingServer
) -> None:
    agent = memory_agent(world)
    embedding_server.down = True
    turn = run(agent, "where do visitors park")

    assert turn.status == TurnStatus.COMPLETED, turn.detail
    (node,) = ActionNode.objects.filter(turn=turn, kind="tool_call")
    assert node.status != "completed"
    results = [
        e.payload for e in SessionEvent.objects.filter(turn=turn, type="tool.result").order_by("id")
    ]
    assert results and "embedder_unavailable" in json.dumps(results)
    assert "unavailable" in turn.final_answer  # the model was told why memory said nothing


def test_the_tenant_comes_from_the_call_not_the_arguments(world: World) -> None:
    schema = tool_services.tool_register_builtin(
        tenant=world.tenant_a, name="memory_search"
    ).input_schema
    assert "tenant" not in json.dumps(schema["properties"])
    assert schema["additionalProperties"] is False
