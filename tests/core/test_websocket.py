"""Websockets through the real ASGI application and the Redis channel layer."""

from __future__ import annotations

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from apps.core.events import tenant_group
from apps.tenants.services import api_key_create
from config.asgi import application
from tests.conftest import World

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ORIGIN = (b"origin", b"http://localhost")


def _session_cookie(user: object) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def test_session_user_receives_tenant_events_over_redis(world: World) -> None:
    from asgiref.sync import sync_to_async

    cookie = await sync_to_async(_session_cookie)(world.alice)
    comm = WebsocketCommunicator(application, "/ws/tenant/", headers=[ORIGIN, (b"cookie", cookie)])
    connected, _ = await comm.connect()
    assert connected
    hello = await comm.receive_json_from(timeout=5)
    assert hello == {"event": "connected", "data": {"tenant": "acme"}}

    layer = get_channel_layer()
    assert type(layer).__name__ == "PinnedPubSubChannelLayer"
    await layer.group_send(
        tenant_group(world.tenant_a.id),
        {"type": "tenant.event", "event": "approval.requested", "data": {"id": "x"}},
    )
    assert await comm.receive_json_from(timeout=5) == {
        "event": "approval.requested",
        "data": {"id": "x"},
    }
    # Another tenant's events never arrive.
    await layer.group_send(
        tenant_group(world.tenant_b.id),
        {"type": "tenant.event", "event": "secret", "data": {}},
    )
    await comm.send_json_to({"type": "ping"})
    assert (await comm.receive_json_from(timeout=5))["event"] == "pong"
    await comm.disconnect()


async def test_api_key_in_header_authenticates(world: World) -> None:
    from asgiref.sync import sync_to_async

    _, raw = await sync_to_async(api_key_create)(tenant=world.tenant_b, name="k", scopes=["read"])
    comm = WebsocketCommunicator(
        application, "/ws/tenant/", headers=[ORIGIN, (b"authorization", f"Bearer {raw}".encode())]
    )
    connected, _ = await comm.connect()
    assert connected
    assert (await comm.receive_json_from(timeout=5))["data"]["tenant"] == "globex"
    await comm.disconnect()


async def test_anonymous_and_bad_keys_are_closed(world: World) -> None:
    comm = WebsocketCommunicator(application, "/ws/tenant/", headers=[ORIGIN])
    connected, code = await comm.connect()
    assert not connected
    assert code == 4401
    bad = WebsocketCommunicator(application, "/ws/tenant/?api_key=wdn_nope_nope", headers=[ORIGIN])
    connected, code = await bad.connect()
    assert not connected
    assert code == 4401
