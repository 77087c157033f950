"""Channels: the Redis channel layer carries every streamed event."""

from __future__ import annotations

from typing import Any

from config.env import env_float, env_int


def channel_layers(redis_url: str) -> dict[str, Any]:
    """CHANNEL_LAYERS on the Redis at `redis_url` (each environment names its Redis)."""
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # A receive blocks in Redis for up to 5 s (channels_redis's brpop_timeout), and
                # redis-py 8 gives up reading after 5 s by default: an idle stream's receive
                # raced that and died ("Timeout reading from ..."). Read longer than we block.
                "hosts": [{"address": redis_url, "socket_timeout": 30}],
                "capacity": 1500,
                "expiry": 60,
            },
        }
    }


# How often an open stream (websocket, SSE) re-checks that its key, membership, user and
# tenant are still active. Changes made through the ORM also reach open streams at once
# (apps/tenants/signals.py); this bounds the delay for expiry and for changes made elsewhere.
WARDEN_STREAM_REAUTH_SECONDS = env_float("WARDEN_STREAM_REAUTH_SECONDS", 2.0)
# The largest websocket frame a consumer reads; larger ones get an `invalid_frame` error.
WARDEN_WS_MAX_FRAME_BYTES = env_int("WARDEN_WS_MAX_FRAME_BYTES", 65_536)
