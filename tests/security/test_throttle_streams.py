"""Guessing API keys over the websocket handshake or SSE spends the same per-address budget of
failed authentications as the REST API: past it, the handshake is refused with 4429 before
any lookup, even for a valid key, while other addresses are unaffected."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client, override_settings

from apps.core.consumers import CLOSE_THROTTLED, CLOSE_UNAUTHENTICATED
from apps.tenants.services import api_key_create
from config.asgi import application
from tests.conftest import World


@pytest.fixture(autouse=True)
def fresh_counters() -> Iterator[None]:
    caches = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"t-{uuid.uuid4().hex}"}}
    with override_settings(CACHES=caches, WARDEN_API_AUTH_FAILURE_RATE="3/hour"):
        yield


async def handshake(key: str, address: str) -> tuple[bool, int | None]:
    comm = WebsocketCommunicator(
        application,
        "/ws/tenant/",
        headers=[(b"origin", b"http://localhost"), (b"authorization", f"Bearer {key}".encode())],
    )
    comm.scope["client"] = (address, 50000)
    connected, code = await comm.connect()
    await comm.disconnect()
    return connected, code


def guess() -> str:
    return f"wdn_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_websocket_key_guessing_is_throttled_per_address(world: World) -> None:
    _, valid = await database_sync_to_async(api_key_create)(
        tenant=world.tenant_a, name="k", scopes=["read"]
    )
    codes = [await handshake(guess(), "127.0.0.51") for _ in range(5)]
    assert codes == [(False, CLOSE_UNAUTHENTICATED)] * 3 + [(False, CLOSE_THROTTLED)] * 2
    # The guessing address learns nothing more, not even from a right key ...
    assert await handshake(valid, "127.0.0.51") == (False, CLOSE_THROTTLED)
    # ... and an honest client elsewhere is unaffected.
    assert (await handshake(valid, "127.0.0.52"))[0] is True


@pytest.mark.django_db
def test_sse_key_guessing_gets_429_with_retry_after(world: World) -> None:
    client = Client(REMOTE_ADDR="127.0.0.53")
    url = f"/api/v1/sessions/{uuid.uuid4()}/events?follow=0"
    statuses = [
        client.get(url, HTTP_AUTHORIZATION=f"Bearer {guess()}").status_code for _ in range(3)
    ]
    assert statuses == [401] * 3
    refused = client.get(url, HTTP_AUTHORIZATION=f"Bearer {guess()}")
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert int(refused["Retry-After"]) >= 1
