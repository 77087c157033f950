"""Django's cache on Redis: API throttle counters (and anything else that may be lost)."""

from __future__ import annotations

from typing import Any

from config.env import env_str

# Several deployments (or the test suite) may share one Redis.
WARDEN_CACHE_KEY_PREFIX = env_str("WARDEN_CACHE_KEY_PREFIX", "warden")


def caches(redis_url: str) -> dict[str, Any]:
    """CACHES for the Redis at `redis_url` (each environment names its Redis: services.py)."""
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": WARDEN_CACHE_KEY_PREFIX,
            "TIMEOUT": 300,
            # One pool per process, not one per thread (see apps/core/redis_pool.py).
            "OPTIONS": {"pool_class": "apps.core.redis_pool.SharedConnectionPool"},
        }
    }
