"""Readiness probes for the platform's dependencies."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import connection


@dataclass
class CheckResult:
    ok: bool
    detail: str
    latency_ms: float


def _timed(fn: object) -> CheckResult:
    started = time.monotonic()
    try:
        detail = fn()  # type: ignore[operator]
        ok = True
    except Exception as exc:  # every failure is a "not ready", reported not raised
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return CheckResult(
        ok=ok, detail=str(detail), latency_ms=round((time.monotonic() - started) * 1000, 1)
    )


def check_database() -> CheckResult:
    def probe() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return "ok"

    return _timed(probe)


def check_redis() -> CheckResult:
    def probe() -> str:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1
        )
        try:
            client.ping()
        finally:
            client.close()
        return "ok"

    return _timed(probe)
