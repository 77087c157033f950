"""Several ORM writes in one round trip, committed together.

A statement is compiled by Django exactly as `Model.save()` (an INSERT) or `QuerySet.update()`
would compile it — same columns, `auto_now` values, JSON adaptation — and `execute` sends a
list of them to PostgreSQL in one psycopg pipeline: one network round trip, one transaction
(all of them commit, or none does). Results come back per statement, in order.

This rests on Django's psycopg 3 backend binding parameters on the server
(`OPTIONS["server_side_binding"]`, config/settings/database.py): pipeline mode needs it, and it
lets psycopg prepare a statement a connection runs again, so PostgreSQL plans it once. In
autocommit the pipeline's statements are one implicit transaction, up to its one Sync; inside
an atomic block they join the block's transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model, QuerySet
from django.db.models.sql import InsertQuery, UpdateQuery
from psycopg import pq


@dataclass(frozen=True)
class Statement:
    sql: str
    params: Sequence[Any] | Mapping[str, Any]  # %s placeholders, or %(name)s ones


@dataclass(frozen=True)
class Result:
    rowcount: int
    rows: list[tuple[Any, ...]] | None  # None: the statement returns no rows


def insert(obj: Model, *, returning: bool = False) -> Statement:
    """The INSERT `obj.save()` would send for a new row (`returning`: with RETURNING of the
    fields the database fills in, such as an auto-increment id)."""
    return insert_rows([obj], returning=returning)


def insert_rows(objs: Sequence[Model], *, returning: bool = False) -> Statement:
    """One INSERT of new rows of one model, in their order (`returning`: one row back per
    object, in the same order).

    A model's one-row INSERT is compiled once per model and process, and each row's values
    are prepared as Django's compiler prepares them (`pre_save`, then `get_db_prep_save`).
    Several rows are that INSERT with one VALUES list per row, all "%s": the SQL for n rows is
    made once, prepared once per connection, and its parameters are the rows' values as they
    are (Django's own form for several rows, UNNEST of one array per column, spends more CPU
    building the arrays than the planning it saves once the statement is prepared). Rows
    holding an expression are compiled whole by Django."""
    model = type(objs[0])
    assert all(type(obj) is model for obj in objs), "one model per INSERT"
    fields = _insert_fields(model)
    key = (model, returning)
    if key not in _insert_sql and _plain(objs[0], fields):
        # "%s" for every value: the SQL fits any row of this model.
        _insert_sql[key] = _compiled(objs[:1], fields, returning=returning).sql
    one = _insert_sql.get(key)
    if one is not None and (rows := _prepared(objs, fields)) is not None:
        return Statement(_rows_sql(one, len(fields), len(objs)), tuple(chain.from_iterable(rows)))
    return _compiled(objs, fields, returning=returning)


def _plain(obj: Model, fields: list[Any]) -> bool:
    """Whether Django writes `obj`'s row as one "%s" per value: no field with a placeholder
    of its own, no value that is an expression."""
    return not any(
        getattr(field, "get_placeholder", None) is not None
        or hasattr(getattr(obj, field.attname), "resolve_expression")
        for field in fields
    )


def _compiled(objs: Sequence[Model], fields: list[Any], *, returning: bool) -> Statement:
    """The INSERT of `objs` as Django compiles it."""
    model = type(objs[0])
    query = InsertQuery(model)
    query.insert_values(fields, list(objs))
    compiler = query.get_compiler(using=DEFAULT_DB_ALIAS)
    compiler.returning_fields = list(model._meta.db_returning_fields) if returning else None
    [(sql, params)] = compiler.as_sql()
    return Statement(sql, tuple(params))


@functools.cache
def _rows_sql(one: str, width: int, count: int) -> str:
    """The one-row INSERT `one` with `count` VALUES lists."""
    row = "(" + ", ".join(["%s"] * width) + ")"
    head, values, tail = one.partition(" VALUES " + row)
    assert values and row not in tail, "a one-row INSERT of plain placeholders"
    return head + " VALUES " + ", ".join([row] * count) + tail


def _prepared(objs: Sequence[Model], fields: list[Any]) -> list[list[Any]] | None:
    """Each object's values as its INSERT sends them; None if one holds an expression."""
    connection = connections[DEFAULT_DB_ALIAS]
    rows = []
    for obj in objs:
        values = [field.pre_save(obj, add=True) for field in fields]
        if any(hasattr(value, "resolve_expression") for value in values):
            return None
        rows.append(
            [
                field.get_db_prep_save(value, connection=connection)
                for field, value in zip(fields, values, strict=True)
            ]
        )
    return rows


_insert_sql: dict[tuple[type[Model], bool], str] = {}


@functools.cache
def _insert_fields(model: type[Model]) -> list[Any]:
    meta = model._meta
    return [f for f in meta.local_concrete_fields if f is not meta.auto_field]


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
    if not connection.settings_dict["OPTIONS"].get("server_side_binding"):
        raise ImproperlyConfigured(
            "apps.core.batch pipelines its statements, which needs the database's "
            'OPTIONS["server_side_binding"] (config/settings/database.py)'
        )
    cursors = []
    try:
        with connection.wrap_database_errors:
            connection.ensure_connection()
            with connection.connection.pipeline():
                for statement in statements:
                    cursors.append(cursor := connection.cursor())
                    cursor.execute(statement.sql, statement.params)
        # The pipeline's Sync has brought every result back: reading them sends nothing.
        return [_result(cursor) for cursor in cursors]
    finally:
        for cursor in cursors:
            cursor.close()


def _result(cursor: Any) -> Result:
    # Whether rows came back, from the result's status: `description` would build an object
    # per column first (a joined read has dozens).
    result = cursor.cursor.pgresult  # Django's wrapper, then psycopg's cursor
    returned = result is not None and result.status == pq.ExecStatus.TUPLES_OK
    return Result(rowcount=cursor.rowcount, rows=cursor.fetchall() if returned else None)
