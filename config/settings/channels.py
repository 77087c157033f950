"""Channels: the Redis channel layer carries every streamed event."""

from __future__ import annotations

from typing import Any

from config.env import env_float, env_int


def channel_layers(redis_url: str) -> dict[str, Any]:
    """CHANNEL_LAYERS on the Redis at `redis_url` (each environment names its Redis).

    Redis pub/sub: a live event is one PUBLISH, and each process holds one subscription per
    group its open streams follow. The list-based RedisChannelLayer took ~7 round trips per
    event (group membership sorted sets, a Lua send per member, a blocking pop per receive)
    and was the largest share of the channel-layer CPU in benchmarks/bench_turns.py. What
    pub/sub gives up is delivery to a subscriber that is not connected at that moment, which
    live events never had: every event is a row first, and a stream that missed one gets it
    from the backlog (`Last-Event-ID`, apps/agents/api/sse.py). Its receiver polls with a
    0.1 s read timeout, below the socket timeout; apps/core/channel_layer.py keeps it
    subscribed.
    """
    return {
        "default": {
            "BACKEND": "apps.core.channel_layer.PinnedPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_url, "socket_timeout": 30}]},
        }
    }


# How often an open stream (websocket, SSE) re-checks that its key, membership, user and
# tenant are still active. Changes made through the ORM also reach open streams at once
# (apps/tenants/signals.py); this bounds the delay for expiry and for changes made elsewhere.
WARDEN_STREAM_REAUTH_SECONDS = env_float("WARDEN_STREAM_REAUTH_SECONDS", 2.0)
# The largest websocket frame a consumer reads; larger ones get an `invalid_frame` error.
WARDEN_WS_MAX_FRAME_BYTES = env_int("WARDEN_WS_MAX_FRAME_BYTES", 65_536)
