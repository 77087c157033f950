"""Django's cache on Redis: API throttle counters (and anything else that may be lost)."""

from __future__ import annotations

from config.env import env_str
from config.settings.database import REDIS_URL

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        # Several deployments (or the test suite) may share one Redis.
        "KEY_PREFIX": env_str("WARDEN_CACHE_KEY_PREFIX", "warden"),
        "TIMEOUT": 300,
        # One pool per process, not one per thread (see apps/core/redis_pool.py).
        "OPTIONS": {"pool_class": "apps.core.redis_pool.SharedConnectionPool"},
    }
}
