"""The chat's websocket runs on the browser's session cookie: a page on another site can't
ride that cookie (cross-site websocket hijacking), and the cookie reaches only its own
tenant's sessions, on the same permissions as an API key."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from apps.agents.models import Agent, Turn
from config.asgi import application
from tests.agents.conftest import make_session, no_dispatch, two_tool_agent
from tests.conftest import World
from tests.security.channels_helpers import ORIGIN, session_cookie

__all__ = ["no_dispatch", "two_tool_agent"]  # the agents' fixtures, used here

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio,
    pytest.mark.usefixtures("no_dispatch"),
]


async def _open(path: str, cookie: str, origin: bytes = ORIGIN[1]) -> tuple[bool, int | None]:
    comm = WebsocketCommunicator(
        application, path, headers=[(b"origin", origin), (b"cookie", cookie.encode())]
    )
    connected, code = await comm.connect()
    await comm.disconnect()
    return connected, code


async def test_a_page_on_another_site_cannot_use_the_session_cookie(
    world: World, two_tool_agent: Agent
) -> None:
    session = await sync_to_async(make_session)(two_tool_agent, world.alice)
    cookie = await sync_to_async(session_cookie)(world.alice)
    path = f"/ws/sessions/{session.id}/?tenant=acme"
    assert (await _open(path, cookie, b"https://evil.example"))[0] is False
    assert (await _open(path, cookie, b"null"))[0] is False
    assert (await _open(path, cookie))[0] is True


async def test_the_cookie_reaches_only_its_tenants_sessions_and_its_roles_messages(
    world: World, two_tool_agent: Agent
) -> None:
    session = await sync_to_async(make_session)(two_tool_agent, world.alice)
    charlie = await sync_to_async(session_cookie)(world.charlie)
    # Charlie's own tenant, or naming Alice's tenant he is no member of: not found / refused.
    assert await _open(f"/ws/sessions/{session.id}/?tenant=globex", charlie) == (False, 4404)
    assert (await _open(f"/ws/sessions/{session.id}/?tenant=acme", charlie))[0] is False
    # Bob, a member of Alice's tenant, does not see her session either.
    bob = await sync_to_async(session_cookie)(world.bob)
    assert await _open(f"/ws/sessions/{session.id}/?tenant=acme", bob) == (False, 4404)

    # Alice's cookie sends a message like any client: a turn, queued.
    cookie = await sync_to_async(session_cookie)(world.alice)
    comm = WebsocketCommunicator(
        application,
        f"/ws/sessions/{session.id}/?tenant=acme",
        headers=[ORIGIN, (b"cookie", cookie.encode())],
    )
    connected, _ = await comm.connect()
    assert connected
    await comm.send_json_to({"type": "message", "content": "hello from the chat"})
    ack = await comm.receive_json_from(timeout=5)
    while ack["event"] != "ack":
        ack = await comm.receive_json_from(timeout=5)
    assert ack["data"]["status"] == "queued"
    await comm.disconnect()
    turn = await sync_to_async(Turn.objects.get)(id=ack["data"]["turn_id"])
    assert (turn.user_message, turn.requested_by_id) == ("hello from the chat", world.alice.id)
