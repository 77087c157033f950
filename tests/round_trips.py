"""The queries Django sends, one entry per round trip to PostgreSQL.

Statements sent in one psycopg pipeline (apps/core/batch.py) travel together: they are one
entry, their SQL joined by ";\\n" as one multi-statement query would read. With `params`, an
entry ends with " -- " and the parameters of its statements, in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import psycopg
from django.db import connection


@contextmanager
def round_trips(*, params: bool = False) -> Iterator[list[str]]:
    trips: list[str] = []
    pipelined: list[tuple[str, Any]] | None = None  # the open pipeline's statements
    pipeline = psycopg.Connection.pipeline

    def entry(statements: list[tuple[str, Any]]) -> str:
        sql = ";\n".join(sql for sql, _ in statements)
        if not params:
            return sql
        values = [v for _, v in statements]
        return f"{sql} -- {values[0] if len(values) == 1 else values!r}"

    @contextmanager
    def counted(conn: psycopg.Connection[Any]) -> Iterator[Any]:
        nonlocal pipelined
        outer, pipelined = pipelined is None, pipelined if pipelined is not None else []
        try:
            with pipeline(conn) as opened:
                yield opened
        finally:
            if outer:
                if pipelined:
                    trips.append(entry(pipelined))
                pipelined = None

    def record(execute: Any, sql: str, values: Any, many: bool, context: Any) -> Any:
        if pipelined is not None:
            pipelined.append((sql, values))
        else:
            trips.append(entry([(sql, values)]))
        return execute(sql, values, many, context)

    with mock.patch.object(psycopg.Connection, "pipeline", counted):
        with connection.execute_wrapper(record):
            yield trips
