"""A Redis connection pool shared by every thread of a process.

Django keeps a cache object per thread (per request context under ASGI), and each cache object
builds its own connection pool: under daphne, where every request runs on a new thread, every
request opened a new Redis connection (and redis-py looked up its own version for the
handshake) before its first throttle check. `CACHES[...]["OPTIONS"]["pool_class"]` names this
class so all of them share one pool per URL. redis-py pools are thread-safe and start over
in a forked child.
"""

from __future__ import annotations

import threading
from typing import Any

import redis


class SharedConnectionPool(redis.ConnectionPool):
    _shared: dict[tuple[str, str], redis.ConnectionPool] = {}
    _registry_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Any:
        key = (url, repr(sorted(kwargs.items(), key=lambda item: item[0])))
        with cls._registry_lock:
            pool = cls._shared.get(key)
            if pool is None:
                pool = super().from_url(url, **kwargs)
                cls._shared[key] = pool
            return pool
