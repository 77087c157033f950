"""The breakers' store from the settings: Redis (shared) with a per-process fallback, or memory."""

from __future__ import annotations

import threading

import redis
from django.conf import settings

from apps.core.breakers import (
    BreakerStore,
    FallbackBreakerStore,
    MemoryBreakerStore,
    RedisBreakerStore,
)

_store: BreakerStore | None = None
_lock = threading.Lock()


def breaker_store() -> BreakerStore:
    """This process's store for every circuit breaker (model endpoints and tool servers)."""
    global _store
    with _lock:
        if _store is None:
            _store = _build()
        return _store


def _build() -> BreakerStore:
    kind = settings.WARDEN_BREAKER_STORAGE
    if kind == "memory":
        return MemoryBreakerStore()
    if kind != "redis":
        raise ValueError(f"WARDEN_BREAKER_STORAGE must be 'redis' or 'memory', not {kind!r}")
    timeout = settings.WARDEN_BREAKER_REDIS_TIMEOUT_SECONDS
    client = redis.Redis.from_url(
        settings.WARDEN_BREAKER_REDIS_URL or settings.REDIS_URL,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )
    return FallbackBreakerStore(
        RedisBreakerStore(client, prefix=settings.WARDEN_BREAKER_KEY_PREFIX),
        retry_after_s=settings.WARDEN_BREAKER_REDIS_RETRY_SECONDS,
    )


def breaker_store_reset() -> None:
    """Forget the store (tests that change the settings)."""
    global _store
    with _lock:
        _store = None
