"""Readiness probes for the platform's dependencies."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


# Figures other apps add to /readyz's body, for operators: they never fail readiness (the
# backpressure state, e.g., must not pull web from the load balancer exactly when it has to
# answer 503 with Retry-After).
_details: dict[str, Callable[[], Any]] = {}


def readiness_detail_register(name: str, fn: Callable[[], Any]) -> None:
    _details[name] = fn


def readiness_details() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, fn in _details.items():
        try:
            out[name] = fn()
        except Exception as exc:  # reported, never raised: readiness is about db and redis
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
