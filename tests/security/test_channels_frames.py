"""A websocket frame the server cannot read gets an `invalid_frame` error; the socket keeps working.

Before, such a frame killed the consumer's handler while the socket stayed open: every
later message, even a ping, went unanswered.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from apps.agents.models import Turn
from apps.tenants.services import api_key_create
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World
from tests.security.channels_helpers import receive_event, ws_connect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

BAD_FRAMES = {
    "not json": "this is not json",
    "raw NUL": '{"type": "ping\x00"}',
    "escaped NUL in a message": '{"type": "message", "content": "a\\u0000b"}',
    "raw lone surrogate": '{"type": "message", "content": "\ud800"}',
    "escaped lone surrogate": '{"type": "message", "content": "\\udc00"}',
    "a JSON array": '[{"type": "ping"}]',
    "a JSON string": '"ping"',
    "too deep": '{"type": "message", "content": ' + "[" * 5000 + "]" * 5000 + "}",
}


async def _every_bad_frame_gets_an_error_and_the_socket_still_answers(
    comm: WebsocketCommunicator,
) -> None:
    for name, frame in BAD_FRAMES.items():
        await comm.send_to(text_data=frame)
        error, _ = await receive_event(comm, "error", timeout=5)
        assert error["data"]["code"] == "invalid_frame", name
        await comm.send_json_to({"type": "ping"})
        await receive_event(comm, "pong", timeout=5)
    await comm.send_to(bytes_data=b"\xff\xfe not utf-8")
    error, _ = await receive_event(comm, "error", timeout=5)
    assert error["data"]["code"] == "invalid_frame"
    await comm.send_json_to({"type": "ping"})
    await receive_event(comm, "pong", timeout=5)


async def test_session_websocket_survives_unreadable_frames(world: World) -> None:
    agent = await sync_to_async(make_agent)(world.tenant_a, [{"final": "hi"}])
    session = await sync_to_async(make_session)(agent, world.alice)
    _, key = await sync_to_async(api_key_create)(tenant=world.tenant_a, name="k", scopes=["write"])
    comm = await ws_connect(f"/ws/sessions/{session.id}/", key=key)
    await _every_bad_frame_gets_an_error_and_the_socket_still_answers(comm)
    await comm.disconnect()
    # None of the frames reached the turn queue.
    assert await sync_to_async(Turn.objects.filter(session=session).count)() == 0


async def test_tenant_websocket_survives_unreadable_frames(world: World) -> None:
    _, key = await sync_to_async(api_key_create)(tenant=world.tenant_a, name="k", scopes=["read"])
    comm = await ws_connect("/ws/tenant/", key=key)
    await receive_event(comm, "connected")
    await _every_bad_frame_gets_an_error_and_the_socket_still_answers(comm)
    await comm.disconnect()
