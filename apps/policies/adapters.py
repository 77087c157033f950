"""This process's policy engine, built from the settings (the glue to the pure engines).

One engine per process, made on first use: with `OPA_URL` set an `OpaEngine`, else a
`RegoEngine` whose helper processes start with the first decision that needs one (or check; a
worker warms one when it is ready) — the shipped default policy needs none, it is evaluated in
the calling thread. It is rebuilt when the settings that shape it change (tests switch
engines with `settings`), and after a fork: a child must never talk to its parent's helpers
over the pipes it inherited (the parent's engine is left alone, not closed).
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from django.conf import settings

from apps.policies.engines.base import PolicyEngine
from apps.policies.engines.opa import OpaEngine
from apps.policies.engines.rego import RegoEngine

_lock = threading.Lock()
_engine: PolicyEngine | None = None
_engine_key: tuple[Any, ...] = ()
_engine_pid = 0


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
    global _engine, _engine_key, _engine_pid
    key = _settings_key()
    with _lock:
        if _engine is not None and key == _engine_key and _engine_pid == os.getpid():
            return _engine
        old = _engine if _engine_pid == os.getpid() else None
        _engine, _engine_key, _engine_pid = _build(), key, os.getpid()
    if old is not None:
        old.close()
    return _engine


def policy_engine_warm() -> None:
    """Start the in-process engine's first helper now, off the first decision's path."""
    engine = policy_engine()
    if isinstance(engine, RegoEngine):
        engine.warm()


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
    if _engine is not None and _engine_pid == os.getpid():
        _engine.close()
