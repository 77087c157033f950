"""Django's PostgreSQL backend, with a pool that checks a connection without a round trip.

With CONN_HEALTH_CHECKS, Django has psycopg_pool check every connection it hands out with an
empty query: a round trip before every web request and every task, on the path of each
(issue 8). `check_connection` asks the server only when the connection's socket says the
server went away. Everything else is Django's backend as it is.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


def check_connection(conn: Any) -> None:
    """Raise if the connection the pool is about to hand out is no longer usable.

    An idle connection's socket has nothing to read unless the server went away: a server
    shut down or restarted, or a terminated backend, sends its notice and closes, and that
    leaves the socket readable. Only then is the server asked (psycopg_pool's own check, which
    fails, and the pool replaces the connection); otherwise the connection is handed out at
    once. What neither notices in advance, a server gone without a word (a cut network),
    fails the first query either way.
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()  # not select(): a busy process may have descriptors past 1024
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        options = self.settings_dict["OPTIONS"].get("pool")
        pools: dict[str, Any] = self._connection_pools  # type: ignore[attr-defined]
        if self.alias == NO_DB_ALIAS or not options or self.alias in pools:
            return super().pool
        if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
            return super().pool  # Django's ImproperlyConfigured
        # As Django builds it (django/db/backends/postgresql/base.py), with the check above.
        pool = ConnectionPool(
            kwargs={**self.get_connection_params(), "autocommit": True},
            open=False,
            configure=self._configure_connection,  # type: ignore[attr-defined]
            check=check_connection if self.settings_dict["CONN_HEALTH_CHECKS"] else None,
            **({} if options is True else options),
        )
        pools.setdefault(self.alias, pool)
        return pools[self.alias]
