"""The pool's check before it hands a connection out: no round trip for a live one, and a
connection whose server went away is replaced, not handed to a request."""

from __future__ import annotations

import select
from typing import Any

import httpx
import psycopg
import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from apps.tenants import services
from config.postgres.base import check_connection
from tests.conftest import LiveServer, World, _test_env

pytestmark = pytest.mark.django_db(transaction=True)


def _dsn() -> str:
    params = connection.get_connection_params()
    return psycopg.conninfo.make_conninfo(
        **{k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")}
    )


def test_a_live_connection_is_handed_out_without_a_round_trip_and_a_dead_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[Any] = []
    real = ConnectionPool.check_connection
    monkeypatch.setattr(
        ConnectionPool, "check_connection", staticmethod(lambda c: (asked.append(c), real(c)))
    )
    with (
        psycopg.connect(_dsn(), autocommit=True) as idle,
        psycopg.connect(_dsn(), autocommit=True) as other,
    ):
        idle.execute("SELECT 1").fetchall()
        check_connection(idle)
        assert asked == []  # nothing sent: the server was not asked

        pid = idle.info.backend_pid
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
        poller = select.poll()
        poller.register(idle.fileno(), select.POLLIN)
        assert poller.poll(5000), "the terminated backend's socket never became readable"
        with pytest.raises(psycopg.OperationalError):
            check_connection(idle)
        assert asked == [idle]


def test_requests_still_succeed_after_the_servers_connections_were_cut(world: World) -> None:
    # What a database restart does to a running web process: every pooled connection dies.
    # The next requests get fresh ones instead of failing.
    _, raw = services.api_key_create(tenant=world.tenant_a, name="check", scopes=["admin"])
    server = LiveServer({**_test_env(), "WARDEN_DB_POOL_SIZE": "3"})
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {raw}"}, timeout=30
        ) as client:
            assert [client.get("/api/v1/agents").status_code for _ in range(5)] == [200] * 5
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = %s",
                    [f"warden pid {server.proc.pid}"],
                )
                (cut,) = cursor.fetchone()
            assert cut >= 1
            assert [client.get("/api/v1/agents").status_code for _ in range(10)] == [200] * 10
    finally:
        server.stop()
