"""A turn through the real openai SDK against a local chat-completions server, with failover."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from apps.agents import orchestrator, services
from apps.agents.models import ActionNode, SessionEvent, TurnStatus
from apps.llm.services import endpoint_save
from tests.agents.conftest import make_session
from tests.conftest import World
from tests.llm.servers import FakeModelServer, chunk, error, hang, sse, tool_delta

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]


@pytest.fixture
def servers() -> Iterator[list[FakeModelServer]]:
    started: list[FakeModelServer] = []
    yield started
    for server in started:
        server.stop()


def _answering_server() -> FakeModelServer:
    return (
        FakeModelServer()
        .play(
            sse(
                [
                    chunk(
                        tool_calls=[
                            tool_delta(0, id="c1", name="calculator", args='{"expression": ')
                        ]
                    ),
                    chunk(tool_calls=[tool_delta(0, args='"6*7"}')]),
                    chunk(finish_reason="tool_calls", usage=(20, 5)),
                ]
            ),
            sse(
                [
                    chunk(content="It is "),
                    chunk(content="42."),
                    chunk(finish_reason="stop", usage=(30, 4)),
                ]
            ),
        )
        .start()
    )


@pytest.mark.parametrize("failure", ["500", "timeout"])
def test_turn_fails_over_to_the_next_endpoint_and_streams(
    world: World, servers: list[FakeModelServer], failure: str
) -> None:
    broken = FakeModelServer(default=error(500) if failure == "500" else hang()).start()
    good = _answering_server()
    servers += [broken, good]
    primary = endpoint_save(
        tenant=world.tenant_a,
        name="primary",
        provider="openai",
        model="m",
        base_url=broken.url,
        price_input_per_mtok=Decimal("0.15"),
        price_output_per_mtok=Decimal("0.60"),
        priority=1,
        timeout_s=1.0,
        api_key="sk-test-not-real",
    )
    backup = endpoint_save(
        tenant=world.tenant_a,
        name="backup",
        provider="openai",
        model="m",
        base_url=good.url,
        price_input_per_mtok=Decimal("0.15"),
        price_output_per_mtok=Decimal("0.60"),
        priority=2,
    )
    agent = services.agent_save(
        tenant=world.tenant_a,
        name="GPT",
        slug="gpt",
        allowed_tools=["calculator"],
        allowed_endpoints=[primary, backup],
    )
    session = make_session(agent)
    turn = services.turn_enqueue(session=session, message="what is 6*7?")
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()

    assert turn.status == TurnStatus.COMPLETED, turn.detail
    assert turn.final_answer == "It is 42."
    assert broken.received, "the primary endpoint was tried first"
    called = SessionEvent.objects.filter(session=session, type="model.called")
    assert {e.payload["endpoint"] for e in called} == {"backup"}
    tool = ActionNode.objects.get(turn=turn, kind="tool_call")
    assert tool.outputs["output"]["value"] == 42
    first_request = good.bodies[0]
    assert first_request["stream"] is True
    assert first_request["tools"][0]["function"]["name"] == "calculator"
    # The API key reached the provider, and nowhere else.
    assert broken.received[0].headers.get("authorization") == "Bearer sk-test-not-real"
    assert not SessionEvent.objects.filter(payload__icontains="sk-test-not-real").exists()
    assert turn.input_tokens == 50 and turn.output_tokens == 9
