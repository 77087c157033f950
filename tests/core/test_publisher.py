"""Live events, published in batches: what a turn's write commits together is one send and one
receive, and every subscriber still gets each event once, in order."""

from __future__ import annotations

import asyncio
import queue
import uuid
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from apps.agents.events import session_group
from apps.core.events import BATCH, _Publisher
from apps.tenants.services import api_key_create
from config.asgi import application
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World

pytestmark = pytest.mark.django_db(transaction=True)


def _event(event_id: int, kind: str = "tool.call") -> dict[str, Any]:
    turn = "00000000-0000-0000-0000-000000000001"
    return {"type": "session.event", "id": event_id, "event": kind, "turn": turn, "data": {}}


async def _publish_and_listen(groups: list[str], pending: queue.Queue[Any]) -> list[dict[str, Any]]:
    """Subscribe to `groups`, run a publisher over `pending` (until its None), and return
    what the subscription heard."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, channel)
    await sync_to_async(_Publisher._run)(pending)
    heard = []
    while True:
        try:
            heard.append(await asyncio.wait_for(layer.receive(channel), timeout=1.0))
        except TimeoutError:
            return heard


def test_what_is_queued_together_for_a_group_goes_as_one_batch_in_order() -> None:
    group, other = f"session.{uuid.uuid4()}", f"session.{uuid.uuid4()}"
    pending: queue.Queue[Any] = queue.Queue()
    for item in [
        (group, _event(1, "model.called")),
        (group, _event(2, "policy.decision")),
        (group, _event(3, "tool.call")),
        (other, _event(4)),  # another group: a send of its own, and the batch ends
        (group, {"type": "principal.changed"}),  # another type: likewise
        (group, _event(5, "tool.result")),
        None,  # the publisher stops once it has sent all of the above
    ]:
        pending.put(item)

    heard = async_to_sync(_publish_and_listen)([group, other], pending)

    assert heard[0]["type"] == BATCH
    assert [m["id"] for m in heard[0]["messages"]] == [1, 2, 3]
    assert [m.get("id") for m in heard[1:]] == [4, None, 5]
    assert all(m["type"] != BATCH for m in heard[1:])


@pytest.mark.asyncio
async def test_a_websocket_watcher_gets_each_event_of_a_batch_in_order(world: World) -> None:
    agent = await sync_to_async(make_agent)(world.tenant_a, [{"final": "ok"}], slug="batched")
    session = await sync_to_async(make_session)(agent, world.alice)
    _, raw = await sync_to_async(api_key_create)(tenant=world.tenant_a, name="k", scopes=["write"])
    comm = WebsocketCommunicator(
        application,
        f"/ws/sessions/{session.id}/",
        headers=[(b"origin", b"http://localhost"), (b"authorization", f"Bearer {raw}".encode())],
    )
    assert (await comm.connect())[0]

    batch = {"type": BATCH, "messages": [_event(7, "model.called"), _event(8, "tool.call")]}
    await get_channel_layer().group_send(session_group(session.id), batch)

    first, second = await comm.receive_json_from(timeout=5), await comm.receive_json_from(5)
    assert [(first["id"], first["event"]), (second["id"], second["event"])] == [
        (7, "model.called"),
        (8, "tool.call"),
    ]
    await comm.disconnect()


def test_an_sse_stream_sends_each_event_of_a_batch_once_in_order(
    world: World, daphne_url: str
) -> None:
    session = make_session(make_agent(world.tenant_a, [{"final": "ok"}], slug="sse-batch"))
    _, key = api_key_create(tenant=world.tenant_a, name="r", scopes=["read"])
    url = f"{daphne_url}/api/v1/sessions/{session.id}/events"
    group = session_group(session.id)
    send = async_to_sync(get_channel_layer().group_send)

    with (
        httpx.Client(timeout=httpx.Timeout(30, connect=5)) as client,
        client.stream("GET", url, headers={"Authorization": f"Bearer {key}"}) as stream,
    ):
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")  # subscribed
        send(group, {"type": BATCH, "messages": [_event(11), _event(12, "tool.result")]})
        # 12 again (already sent) is dropped; 13 is new.
        send(group, {"type": BATCH, "messages": [_event(12, "tool.result"), _event(13)]})
        frames: list[tuple[int, str]] = []
        fields: dict[str, str] = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.strip()
                continue
            if "id" in fields:  # a blank line ends an event
                frames.append((int(fields["id"]), fields.get("event", "")))
            fields = {}
            if len(frames) == 3:
                break

    assert frames == [(11, "tool.call"), (12, "tool.result"), (13, "tool.call")]


def test_token_deltas_queued_behind_one_another_go_as_one_text() -> None:
    group = f"session.{uuid.uuid4()}"

    def token(turn: str, text: str) -> dict[str, Any]:
        return {
            "type": "session.event",
            "id": None,
            "event": "model.token",
            "turn": turn,
            "data": {"text": text},
        }

    pending: queue.Queue[Any] = queue.Queue()
    for item in [
        (group, token("t1", "Hel")),
        (group, token("t1", "lo")),
        (group, token("t1", ", you")),
        (group, token("t2", "!")),  # another turn's: sent on its own
        (group, _event(9)),
        None,
    ]:
        pending.put(item)

    heard = async_to_sync(_publish_and_listen)([group], pending)

    assert [(m.get("turn"), m["data"].get("text")) for m in heard[:2]] == [
        ("t1", "Hello, you"),
        ("t2", "!"),
    ]
    assert heard[2]["id"] == 9
