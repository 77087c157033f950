"""Shared-breaker fixtures: a Redis breaker store of its own per test, on the test Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from apps.core.breakers import RedisBreakerStore


class WallClock:
    """Wall-clock seconds that move only when the test says so; several breaker families
    (standing in for several machines) can share one."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def shared_store(redis_client: redis.Redis) -> Iterator[RedisBreakerStore]:
    prefix = f"test:breaker:{uuid.uuid4().hex}"
    yield RedisBreakerStore(redis_client, prefix=prefix)
    keys = list(redis_client.scan_iter(f"{prefix}:*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def wall_clock() -> WallClock:
    return WallClock()
