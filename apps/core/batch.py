"""Several ORM writes in one round trip, committed together.

A statement is compiled by Django exactly as `Model.save()` (an INSERT) or `QuerySet.update()`
would compile it — same columns, `auto_now` values, JSON adaptation — and `execute` sends a
list of them to PostgreSQL as one query: one network round trip, one implicit transaction
(all of them commit, or none does). Results come back per statement, in order.

This rests on Django's psycopg 3 backend binding parameters on the client (its default,
`ClientCursor`), which lets one query hold several statements. With server-side binding
(`OPTIONS["server_side_binding"]`) the statements are sent one by one inside a transaction
instead: the same outcome, one round trip each.

Why not psycopg's pipeline mode: Django's cursors are client-binding cursors, which pipeline
mode does not support, and an INSERT that returns its id would force a sync anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Model, QuerySet
from django.db.models.sql import InsertQuery, UpdateQuery


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple[Any, ...]


@dataclass(frozen=True)
class Result:
    rowcount: int
    rows: list[tuple[Any, ...]] | None  # None: the statement returns no rows


def insert(obj: Model, *, returning: bool = False) -> Statement:
    """The INSERT `obj.save()` would send for a new row (`returning`: with RETURNING of the
    fields the database fills in, such as an auto-increment id)."""
    meta = obj._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
    query = InsertQuery(type(obj))
    query.insert_values(fields, [obj])
    compiler = query.get_compiler(using=DEFAULT_DB_ALIAS)
    compiler.returning_fields = list(meta.db_returning_fields) if returning else None
    [(sql, params)] = compiler.as_sql()
    return Statement(sql, tuple(params))


def update(queryset: QuerySet[Any], **values: Any) -> Statement:
    """The UPDATE `queryset.update(**values)` would send (its rowcount says how many rows
    matched)."""
    query: Any = queryset.query.chain(UpdateQuery)
    query.add_update_values(values)
    sql, params = query.get_compiler(using=DEFAULT_DB_ALIAS).as_sql()
    return Statement(sql, tuple(params))


def execute(statements: Sequence[Statement], *, using: str = DEFAULT_DB_ALIAS) -> list[Result]:
    """Run the statements in one round trip, all or nothing; their results, in order."""
    if not statements:
        return []
    connection = connections[using]
    if len(statements) == 1:
        with connection.cursor() as cursor:
            cursor.execute(statements[0].sql, statements[0].params)
            return [_result(cursor)]
    if connection.settings_dict["OPTIONS"].get("server_side_binding"):
        with transaction.atomic(using=using), connection.cursor() as cursor:
            results = []
            for statement in statements:
                cursor.execute(statement.sql, statement.params)
                results.append(_result(cursor))
            return results
    sql = ";\n".join(statement.sql for statement in statements)
    params = [param for statement in statements for param in statement.params]
    with connection.cursor() as cursor:
        # Inside an atomic block the statements join its transaction; in autocommit the one
        # multi-statement query is a transaction of its own.
        cursor.execute(sql, params)
        results = [_result(cursor)]
        while cursor.nextset():
            results.append(_result(cursor))
    if len(results) != len(statements):  # a statement that was really two
        raise RuntimeError(f"{len(statements)} statements gave {len(results)} results")
    return results


def _result(cursor: Any) -> Result:
    rows = cursor.fetchall() if cursor.description is not None else None
    return Result(rowcount=cursor.rowcount, rows=rows)
