"""The session websocket: tenancy, bad input, several watchers, replay."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from apps.agents import orchestrator, services
from apps.agents.models import Agent, Turn
from apps.tenants.services import api_key_create
from config.asgi import application
from tests.agents.conftest import make_session
from tests.conftest import World

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio,
    pytest.mark.usefixtures("no_dispatch"),
]

ORIGIN = (b"origin", b"http://localhost")


async def _connect(path: str, raw_key: str) -> tuple[WebsocketCommunicator, bool, Any]:
    comm = WebsocketCommunicator(
        application, path, headers=[ORIGIN, (b"authorization", f"Bearer {raw_key}".encode())]
    )
    connected, code = await comm.connect()
    return comm, connected, code


async def test_foreign_and_unknown_sessions_are_closed_with_4404(
    world: World, two_tool_agent: Agent
) -> None:
    session = await sync_to_async(make_session)(two_tool_agent, world.alice)
    _, foreign = await sync_to_async(api_key_create)(
        tenant=world.tenant_b, name="k", scopes=["write"]
    )
    _, connected, code = await _connect(f"/ws/sessions/{session.id}/", foreign)
    assert (connected, code) == (False, 4404)
    _, connected, code = await _connect("/ws/sessions/not-a-uuid/", foreign)
    assert (connected, code) == (False, 4404)


async def test_two_watchers_both_get_events_and_bad_messages_get_errors(
    world: World, two_tool_agent: Agent
) -> None:
    session = await sync_to_async(make_session)(two_tool_agent, world.alice)
    _, raw = await sync_to_async(api_key_create)(tenant=world.tenant_a, name="k", scopes=["write"])
    first, ok1, _ = await _connect(f"/ws/sessions/{session.id}/", raw)
    second, ok2, _ = await _connect(f"/ws/sessions/{session.id}/", raw)
    assert ok1 and ok2

    await first.send_json_to({"type": "message", "content": ""})
    error = await first.receive_json_from(timeout=5)
    assert error["event"] == "error" and error["data"]["code"] == "empty_message"
    await first.send_json_to({"type": "dance"})
    assert (await first.receive_json_from(timeout=5))["data"]["code"] == "unsupported_message"

    await first.send_json_to({"type": "message", "content": "hello"})
    ack = await first.receive_json_from(timeout=5)
    assert ack["event"] == "ack"
    accepted = await first.receive_json_from(timeout=5)
    assert accepted["event"] == "turn.accepted"
    assert (await second.receive_json_from(timeout=5))["id"] == accepted["id"]

    await sync_to_async(orchestrator.turn_execute)(turn_id=ack["turn"])
    for comm in (first, second):
        seen = []
        while not seen or seen[-1] != "turn.completed":
            seen.append((await comm.receive_json_from(timeout=10))["event"])
        assert seen.count("tool.call") == 2
        await comm.disconnect()


async def test_reconnect_replays_missed_events(world: World, two_tool_agent: Agent) -> None:
    session = await sync_to_async(make_session)(two_tool_agent, world.alice)
    _, raw = await sync_to_async(api_key_create)(tenant=world.tenant_a, name="k", scopes=["write"])
    turn = await sync_to_async(services.turn_enqueue)(session=session, message="hi")
    await sync_to_async(orchestrator.turn_execute)(turn_id=turn.id)
    comm, connected, _ = await _connect(f"/ws/sessions/{session.id}/?last_event_id=0", raw)
    assert connected
    replayed = []
    while not replayed or replayed[-1]["event"] != "turn.completed":
        replayed.append(await comm.receive_json_from(timeout=5))
    assert replayed[0]["event"] == "turn.accepted"
    assert await sync_to_async(lambda: Turn.objects.get(id=turn.id).status)() == "completed"
    await comm.disconnect()


@pytest.mark.usefixtures("budget_prefix")
async def test_a_full_rate_window_is_an_error_event_with_retry_after(
    world: World, two_tool_agent: Agent
) -> None:
    from apps.budgets.models import TenantBudgetSettings
    from apps.budgets.services import ledger as budget_ledger

    await sync_to_async(TenantBudgetSettings.objects.create)(
        tenant=world.tenant_a, rpm_per_tenant=1
    )
    [window] = await sync_to_async(budget_ledger.windows_for)(
        tenant_id=world.tenant_a.id, user_id=None
    )
    # A model call of the tenant filled the window.
    used = await sync_to_async(budget_ledger.reserve)(
        reservation_id="elsewhere@1",
        caps=[],
        windows=[window],
        tokens=1,
        micros=0,
        deadline_s=2e9,
        meta={},
    )
    assert used.kind == "ok"
    session = await sync_to_async(make_session)(two_tool_agent)
    _, raw = await sync_to_async(api_key_create)(tenant=world.tenant_a, name="k", scopes=["write"])
    comm, connected, _ = await _connect(f"/ws/sessions/{session.id}/", raw)
    assert connected
    await comm.send_json_to({"type": "message", "content": "hello"})
    error = await comm.receive_json_from(timeout=5)
    assert error["event"] == "error" and error["data"]["code"] == "rate_limited"
    assert error["data"]["details"]["scope"] == "tenant"
    assert 0 < error["data"]["details"]["retry_after"] <= 60
    assert not await sync_to_async(Turn.objects.filter(session=session).exists)()
    await comm.disconnect()
