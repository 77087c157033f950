"""PostgreSQL: connection pooling, and how a DATABASE_URL becomes DATABASES.

Which database (DATABASE_URL) is each environment's business: see services.py.
"""

from __future__ import annotations

import os
from typing import Any

import dj_database_url

from config.env import env_bool, env_float, env_int

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
# PostgreSQL is (devtools/embedded.py). WARDEN_DB_POOL=false goes back to one connection per
# thread, closed after each task or request unless DATABASE_CONN_MAX_AGE says otherwise.
WARDEN_DB_POOL = env_bool("WARDEN_DB_POOL", True)
WARDEN_DB_POOL_SIZE = env_int("WARDEN_DB_POOL_SIZE", WARDEN_WORKER_TURNS + 8)
WARDEN_DB_POOL_TIMEOUT = env_float("WARDEN_DB_POOL_TIMEOUT", 10.0)
DATABASE_CONN_MAX_AGE = env_int("DATABASE_CONN_MAX_AGE", 0)


def release_advisory_locks(conn: Any) -> None:
    """Run by the pool when a connection comes back: no session lock may travel with it to
    its next user (the orchestrator releases its own; this is the backstop)."""
    conn.execute("SELECT pg_advisory_unlock_all()")


def databases(database_url: str) -> dict[str, Any]:
    """DATABASES for the PostgreSQL at `database_url`, pooled as configured above; without
    one (dev and test while no service runs), a database whose first use says how to get one
    (config/db_not_running)."""
    if not database_url:
        return {"default": {"ENGINE": "config.db_not_running"}}
    default: dict[str, Any] = dict(
        dj_database_url.parse(
            database_url,
            conn_max_age=0 if WARDEN_DB_POOL else DATABASE_CONN_MAX_AGE,
            # Pooled, by the pool as it hands a connection out (config/postgres/base.py).
            conn_health_checks=True,
        )
    )
    # Django's PostgreSQL backend, with a pool check that costs no round trip.
    default["ENGINE"] = "config.postgres"
    options = default.setdefault("OPTIONS", {})
    if WARDEN_DB_POOL:
        options["pool"] = {
            "min_size": 2,
            "max_size": WARDEN_DB_POOL_SIZE,
            "timeout": WARDEN_DB_POOL_TIMEOUT,
            "reset": release_advisory_locks,
        }
    # Parameters bound on the server (Django binds them on the client by default): psycopg
    # then prepares a statement a connection runs again, so PostgreSQL plans it once per
    # connection — planning was half of PostgreSQL's time on a turn (README, "End to end") —
    # and apps/core/batch.py pipelines a turn's writes. Prepared from its third run: the pool
    # hands its connections out in turn, so psycopg's default (the sixth) would take a worker
    # hundreds of turns to reach.
    options["server_side_binding"] = True
    options["prepare_threshold"] = 2
    # Which process holds which connections, in pg_stat_activity.
    options["application_name"] = f"warden pid {os.getpid()}"
    return {"default": default}
