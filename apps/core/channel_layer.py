"""The channel layer: channels_redis's pub/sub layer, kept subscribed.

Its receiver task reads messages only while the connection has a subscription; with none,
it sleeps 0.1 s and looks again. So when the last stream of a process closed and a new one
opened, the new stream's first events waited up to 100 ms (seen in benchmarks/bench_turns.py:
every event of a fast turn arrived in one burst ~90 ms late). Each process's layer therefore
holds one subscription of its own, to a channel nobody publishes to, from its first stream
on: the receiver never sleeps, and a new stream hears its events as they are published.
"""

from __future__ import annotations

from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer


class PinnedPubSubChannelLayer(RedisPubSubChannelLayer):  # type: ignore[misc]
    async def new_channel(self, prefix: str = "specific.") -> str:
        layer: Any = self._get_layer()  # one per event loop
        if not getattr(layer, "warden_pinned", False):
            layer.warden_pinned = True
            await layer.new_channel(prefix="pinned.")
        channel: str = await layer.new_channel(prefix)
        return channel
