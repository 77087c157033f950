"""Turns on the embedded local model's endpoint, against a fake llama.cpp server: what a user
sees while the model builds, when it joins, and with llama.cpp's raw control characters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from apps.agents import orchestrator, services
from apps.agents.models import ActionNode, Agent, SessionEvent, TurnStatus
from apps.llm.models import EndpointState, ModelEndpoint
from apps.llm.services import endpoint_save, endpoint_state_set
from apps.tenants.models import Tenant
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World
from tests.llm.servers import FakeModelServer, chunk, sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]


def _streamed_step(step: dict[str, Any], *, raw: str | None = None) -> Any:
    """One streamed reply whose content is `raw` (exactly as llama.cpp emitted it) or `step`."""
    text = raw if raw is not None else json.dumps(step)
    middle = len(text) // 2
    return sse(
        [
            chunk(content=text[:middle]),
            chunk(content=text[middle:]),
            chunk(finish_reason="stop"),
        ]
    )


@pytest.fixture
def llama() -> Iterator[FakeModelServer]:
    server = FakeModelServer().start()
    yield server
    server.stop()


def _local_agent(tenant: Tenant, server: FakeModelServer) -> tuple[Agent, ModelEndpoint]:
    endpoint = endpoint_save(
        tenant=tenant,
        name="local-model",
        provider="local",
        model="smollm2",
        base_url=server.url,
        supports_tools=False,
        supports_json_schema=True,
        priority=50,
    )
    agent = services.agent_save(
        tenant=tenant,
        name="Local",
        slug="local-assistant",
        allowed_tools=["calculator"],
        allowed_endpoints=[endpoint],
    )
    return agent, endpoint


def test_raw_control_characters_in_the_local_models_step_are_accepted(
    world: World, llama: FakeModelServer
) -> None:
    # llama.cpp's JSON grammar lets a raw newline or tab into a string: all three attempts
    # of "What is 17 times 23?" used to be rejected as "Invalid control character".
    llama.play(
        _streamed_step(
            {},
            raw='{"thought": "17 times 23 is a product.\nI use the calculator.", "action": '
            '{"tool": "calculator", "arguments": {"expression": "17 * 23"}}}',
        ),
        _streamed_step({}, raw='{"thought": "The tool said\t391.", "final_answer": "391"}'),
    )
    agent, _ = _local_agent(world.tenant_a, llama)
    turn = services.turn_enqueue(session=make_session(agent), message="What is 17 times 23?")
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()

    assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
    assert turn.final_answer == "391"
    tool = ActionNode.objects.get(turn=turn, kind="tool_call")
    assert tool.outputs["output"]["value"] == 391
    assert not SessionEvent.objects.filter(turn=turn, type="step.malformed").exists()
    # The request asked for a reproducible answer.
    assert llama.bodies[0]["temperature"] == 0 and isinstance(llama.bodies[0]["seed"], int)


def test_a_turn_on_a_local_model_still_building_fails_at_once_then_succeeds_when_ready(
    world: World, llama: FakeModelServer
) -> None:
    agent, endpoint = _local_agent(world.tenant_a, llama)
    endpoint_state_set(
        endpoint=endpoint,
        state=EndpointState.BUILDING,
        detail="compiling llama.cpp; progress in var/local-llm-build.log",
    )
    session = make_session(agent)
    turn = services.turn_enqueue(session=session, message="What is 17 times 23?")
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()

    assert turn.status == TurnStatus.FAILED
    assert turn.outcome == "endpoint_not_ready"
    failed = SessionEvent.objects.get(turn=turn, type="turn.failed")
    assert failed.payload["reason"] == "endpoint_not_ready"
    assert "building: compiling llama.cpp" in failed.payload["detail"]
    assert not llama.received, "nothing was sent to a server that is not up"

    endpoint_state_set(endpoint=endpoint, state=EndpointState.READY, detail="served")
    llama.play(_streamed_step({"thought": "Easy.", "final_answer": "Hello!"}))
    second = services.turn_enqueue(session=session, message="Say hello")
    orchestrator.turn_execute(turn_id=second.id)
    second.refresh_from_db()
    assert second.status == TurnStatus.COMPLETED, (second.outcome, second.detail)
    assert second.final_answer == "Hello!"


def test_a_ready_endpoint_answers_before_one_that_is_still_building(
    world: World, llama: FakeModelServer
) -> None:
    # The building local model has the better priority; a ready endpoint in the tier answers.
    _, local = _local_agent(world.tenant_a, llama)
    endpoint_state_set(endpoint=local, state=EndpointState.BUILDING, detail="compiling")
    scripted = make_agent(world.tenant_a, [{"final": "from the scripted model"}], slug="s")
    both = services.agent_save(
        tenant=world.tenant_a,
        name="Both",
        slug="both",
        allowed_endpoints=[local, *scripted.allowed_endpoints.all()],
    )
    turn = services.turn_enqueue(session=make_session(both), message="hi")
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
    assert turn.final_answer == "from the scripted model"
    assert not llama.received
