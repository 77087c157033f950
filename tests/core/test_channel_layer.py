"""The pub/sub channel layer keeps one subscription per process, so its receiver never
falls back to polling every 0.1 s between streams (apps/core/channel_layer.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.layers import get_channel_layer

pytestmark = pytest.mark.asyncio


def _shard_subscribed(layer: Any) -> bool:
    (shard,) = layer._get_layer()._shards
    return bool(shard._pubsub is not None and shard._pubsub.subscribed)


async def test_layer_stays_subscribed_after_its_last_stream_ends() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("test.pinned", channel)
    await layer.group_send("test.pinned", {"type": "x", "n": 1})
    assert (await asyncio.wait_for(layer.receive(channel), 5))["n"] == 1

    # The stream ends: its group and its channel are unsubscribed (a cancelled receive
    # unsubscribes the channel, as when a consumer goes away).
    await layer.group_discard("test.pinned", channel)
    pending = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert channel not in layer._get_layer().channels
    assert _shard_subscribed(layer)  # the pinned channel: the receiver keeps reading

    # A new stream hears what is published for it.
    second = await layer.new_channel()
    await layer.group_add("test.pinned", second)
    await layer.group_send("test.pinned", {"type": "x", "n": 2})
    assert (await asyncio.wait_for(layer.receive(second), 5))["n"] == 2
    await layer.group_discard("test.pinned", second)
