"""Database and Redis locations.

`DATABASE_URL` / `REDIS_URL` point at real services. Without them the embedded
services started by `make run` (state in var/services.json) are used, so
`manage.py` works next to a running `make run`.
"""

from __future__ import annotations

import os
from typing import Any

import dj_database_url

from config.embedded import ServiceState
from config.env import env_bool, env_float, env_int, env_str
from config.settings.paths import VAR_DIR


def _embedded_state() -> ServiceState | None:
    return ServiceState.load(VAR_DIR)


_state = _embedded_state()
DATABASE_URL = env_str("DATABASE_URL", "") or (_state.database_url if _state else "") or ""
REDIS_URL = env_str("REDIS_URL", "") or (_state.redis_url if _state else "") or ""

# Turns a worker process runs at once (Celery's threads pool; config/settings/celery.py).
WARDEN_WORKER_TURNS = env_int("WARDEN_WORKER_TURNS", 32)

# Connections: every process (daphne, a worker, beat) keeps a psycopg pool of at most
# WARDEN_DB_POOL_SIZE connections, by default the worker's turns plus a few for the worker's
# other threads (recovery, tool jobs). A running turn holds one connection from the pool for
# its whole length, because its session lock lives on it (apps/agents/orchestrator.py); a
# web request holds one while it runs. A thread that finds the pool exhausted waits up to
# WARDEN_DB_POOL_TIMEOUT seconds, then fails. So the database sees at most
# (web processes + worker processes + beat) x WARDEN_DB_POOL_SIZE connections; size
# Postgres's max_connections (or the pooler in front of it) for that. The embedded
# PostgreSQL is (config/embedded.py). WARDEN_DB_POOL=false goes back to one connection per
# thread, closed after each task or request unless DATABASE_CONN_MAX_AGE says otherwise.
WARDEN_DB_POOL = env_bool("WARDEN_DB_POOL", True)
WARDEN_DB_POOL_SIZE = env_int("WARDEN_DB_POOL_SIZE", WARDEN_WORKER_TURNS + 8)
WARDEN_DB_POOL_TIMEOUT = env_float("WARDEN_DB_POOL_TIMEOUT", 10.0)


def release_advisory_locks(conn: Any) -> None:
    """Run by the pool when a connection comes back: no session lock may travel with it to
    its next user (the orchestrator releases its own; this is the backstop)."""
    conn.execute("SELECT pg_advisory_unlock_all()")


if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL,
            conn_max_age=0 if WARDEN_DB_POOL else env_int("DATABASE_CONN_MAX_AGE", 0),
            conn_health_checks=True,
        )
    }
    if WARDEN_DB_POOL:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 2,
            "max_size": WARDEN_DB_POOL_SIZE,
            "timeout": WARDEN_DB_POOL_TIMEOUT,
            "reset": release_advisory_locks,
        }
    # Which process holds which connections, in pg_stat_activity.
    DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = f"warden pid {os.getpid()}"
else:  # nothing configured: the first query fails (set DATABASE_URL, or run `make run`)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "warden-not-configured",
            "HOST": "127.0.0.1",
            "PORT": "1",
        }
    }

if not REDIS_URL:
    REDIS_URL = "redis://127.0.0.1:6379/0"
