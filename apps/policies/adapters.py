"""This process's policy engine, built from the settings (the glue to the pure engines).

One engine per process, made on first use: with `OPA_URL` set an `OpaEngine`, else a
`RegoEngine` whose helper processes start with the first decision (or check). It is rebuilt
when the settings that shape it change (tests switch engines with `settings`).
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

from django.conf import settings

from apps.policies.engines.base import PolicyEngine
from apps.policies.engines.opa import OpaEngine
from apps.policies.engines.rego import RegoEngine

_lock = threading.Lock()
_engine: PolicyEngine | None = None
_engine_key: tuple[Any, ...] = ()


def _settings_key() -> tuple[Any, ...]:
    return (
        settings.OPA_URL,
        settings.OPA_TOKEN,
        settings.WARDEN_POLICY_TIMEOUT_SECONDS,
        settings.WARDEN_POLICY_COMPILE_TIMEOUT_SECONDS,
        settings.WARDEN_POLICY_HELPERS,
        settings.WARDEN_POLICY_HELPER_MEMORY_MB,
    )


def policy_engine() -> PolicyEngine:
    global _engine, _engine_key
    key = _settings_key()
    with _lock:
        if _engine is not None and key == _engine_key:
            return _engine
        old, _engine = _engine, _build()
        _engine_key = key
    if old is not None:
        old.close()
    return _engine


def _build() -> PolicyEngine:
    if settings.OPA_URL:
        return OpaEngine(
            settings.OPA_URL,
            timeout_s=settings.WARDEN_POLICY_TIMEOUT_SECONDS,
            token=settings.OPA_TOKEN or None,
        )
    return RegoEngine(
        helpers=settings.WARDEN_POLICY_HELPERS,
        timeout_s=settings.WARDEN_POLICY_TIMEOUT_SECONDS,
        compile_timeout_s=settings.WARDEN_POLICY_COMPILE_TIMEOUT_SECONDS,
        memory_limit_bytes=settings.WARDEN_POLICY_HELPER_MEMORY_MB * 1024 * 1024,
    )


@atexit.register
def _close() -> None:
    if _engine is not None:
        _engine.close()
