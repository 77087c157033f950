"""The model's private reasoning never streams to identities that may not read it.

`GET /turns/<id>/steps` hides the scratchpad (the full thought, the raw output) from a
read-only key; the websocket and SSE apply the same rule to `model.token` deltas and to
every other event, live and in backlog replay, while an operator still sees them.
A real worker runs the turn with the scripted model.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async

from apps.agents.models import Agent
from apps.tenants.services import api_key_create
from tests.agents.conftest import make_agent, make_session
from tests.conftest import WorkerProcess, World
from tests.security.channels_helpers import receive_event, sse_events, ws_connect

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SECRET = "SECRET-PLAN-7731"
RATIONALE = "Checking the time."


@pytest.fixture
def thinking_agent(world: World) -> Agent:
    script = [
        {
            "tool": "clock_now",
            "arguments": {"timezone": "UTC"},
            "say": f"{RATIONALE} Then I will quietly {SECRET} without telling the user.",
        },
        {"final": "It is ${tool_result_1}."},
    ]
    return make_agent(world.tenant_a, script, tools=["clock_now"], slug="thinker")


def _leaks(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "model.token" or SECRET in str(e)]


def _tokens(events: list[dict[str, Any]]) -> str:
    return "".join(e["data"]["text"] for e in events if e["event"] == "model.token")


@pytest.mark.asyncio
async def test_websocket_streams_thoughts_to_operators_only(
    world: World, thinking_agent: Agent, celery_worker: WorkerProcess
) -> None:
    session = await sync_to_async(make_session)(thinking_agent, world.alice)
    _, write_key = await sync_to_async(api_key_create)(
        tenant=world.tenant_a, name="rw", scopes=["write"]
    )
    _, read_key = await sync_to_async(api_key_create)(
        tenant=world.tenant_a, name="ro", scopes=["read"]
    )
    operator = await ws_connect(f"/ws/sessions/{session.id}/", key=write_key)
    viewer = await ws_connect(f"/ws/sessions/{session.id}/", key=read_key)

    await operator.send_json_to({"type": "message", "content": "what time is it?"})
    _, operator_saw = await receive_event(operator, "turn.completed", timeout=60)
    _, viewer_saw = await receive_event(viewer, "turn.completed", timeout=60)
    await operator.disconnect()
    await viewer.disconnect()

    assert SECRET in _tokens(operator_saw)
    assert _leaks(viewer_saw) == []
    # The viewer still follows along: the short rationale and the answer.
    rationales = [e["data"]["rationale"] for e in viewer_saw if e["event"] == "step.rationale"]
    assert rationales == [RATIONALE]

    replay = await ws_connect(f"/ws/sessions/{session.id}/?last_event_id=0", key=read_key)
    _, replayed = await receive_event(replay, "turn.completed")
    await replay.disconnect()
    assert replayed[0]["event"] == "turn.accepted"
    assert _leaks(replayed) == []


def test_sse_streams_thoughts_to_operators_only(
    world: World, thinking_agent: Agent, celery_worker: WorkerProcess, daphne_url: str
) -> None:
    session = make_session(thinking_agent, world.alice)
    _, write_key = api_key_create(tenant=world.tenant_a, name="rw", scopes=["write"])
    _, read_key = api_key_create(tenant=world.tenant_a, name="ro", scopes=["read"])
    url = f"{daphne_url}/api/v1/sessions/{session.id}/events"
    as_operator = {"Authorization": f"Bearer {write_key}"}
    as_viewer = {"Authorization": f"Bearer {read_key}"}

    with (
        httpx.Client(timeout=httpx.Timeout(60, connect=5)) as client,
        client.stream("GET", url, headers=as_operator) as operator,
        client.stream("GET", url, headers=as_viewer) as viewer,
    ):
        operator_lines, viewer_lines = operator.iter_lines(), viewer.iter_lines()
        # Both streams are open (subscribed) before the turn starts.
        assert next(operator_lines).startswith("retry:")
        assert next(viewer_lines).startswith("retry:")
        accepted = client.post(
            f"{daphne_url}/api/v1/sessions/{session.id}/turns",
            json={"message": "what time is it?"},
            headers=as_operator,
        )
        assert accepted.status_code == 202, accepted.text
        operator_saw = list(sse_events(operator_lines, until="turn.completed"))
        viewer_saw = list(sse_events(viewer_lines, until="turn.completed"))

        backlog = client.get(
            url, params={"follow": "0"}, headers={**as_viewer, "Last-Event-ID": "0"}
        )
        replayed = list(sse_events(iter(backlog.text.splitlines())))
        # The same rule as the action graph's scratchpad.
        steps_url = f"{daphne_url}/api/v1/turns/{accepted.json()['id']}/steps"
        viewer_steps = client.get(steps_url, headers=as_viewer)
        operator_steps = client.get(steps_url, headers=as_operator)

    assert SECRET in _tokens(operator_saw)
    assert _leaks(viewer_saw) == []
    assert [e["event"] for e in viewer_saw].count("step.rationale") == 1
    assert replayed[-1]["event"] == "turn.completed"
    assert _leaks(replayed) == []
    assert viewer_steps.status_code == operator_steps.status_code == 200
    assert SECRET not in viewer_steps.text and SECRET in operator_steps.text
