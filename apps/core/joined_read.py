"""One row of several joined tables as model instances, from SQL written once.

For the few reads on a hot path whose QuerySet costs more to compile than to run: Django
compiles a `select_related` query with annotations anew at every evaluation (about 1 ms of CPU
for four tables and two subqueries), while the SQL never changes. A `JoinedRead` lists each
model's columns in field order under an alias, and turns a fetched row back into the models,
through `Model.from_db` and each field's database converters (JSON text → Python), as a
QuerySet would. The caller writes the FROM/JOIN/WHERE and links the instances it gets back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Field, Model

from apps.core import batch


class JoinedRead:
    def __init__(
        self,
        models: Sequence[tuple[type[Model], str]],
        tail: str,
        *,
        extra: str = "",
        head: str = "",
    ) -> None:
        """`models`: each model with the alias its table has in the SQL, in column order;
        `tail`: the FROM/JOIN/WHERE after the columns; `extra`: columns computed after theirs;
        `head`: a WITH clause before the SELECT."""
        self.models = list(models)
        self._fields: list[list[Field[Any, Any]]] = [
            list(model._meta.concrete_fields) for model, _ in self.models
        ]
        columns = ", ".join(
            f'{alias}."{field.column}"'
            for (_, alias), fields in zip(self.models, self._fields, strict=True)
            for field in fields
        )
        self.sql = f"{head} SELECT {columns}{', ' + extra if extra else ''} {tail}".lstrip()

    def one(
        self, params: Any, *, where: str = "", using: str = DEFAULT_DB_ALIAS
    ) -> tuple[list[Model | None], tuple[Any, ...]] | None:
        """The row the SQL (and `where`, appended to it) selects with `params`: its models, and
        the values of the `extra` columns. None when there is no such row."""
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(self.sql + where, params)
            row = cursor.fetchone()
        if row is None:
            return None
        return self.split(row, connection)

    def split(
        self, row: Sequence[Any], connection: Any
    ) -> tuple[list[Model | None], tuple[Any, ...]]:
        """A fetched row as its models (see build) and the values of the `extra` columns."""
        width = sum(len(fields) for fields in self._fields)
        return self.build(row, connection), tuple(row[width:])

    def build(self, row: Sequence[Any], connection: Any) -> list[Model | None]:
        """The instances of the models, from the leading columns of `row` (what follows them,
        such as computed columns, is the caller's). None for a model whose columns are all
        NULL: the missing side of a LEFT JOIN."""
        instances: list[Model | None] = []
        start = 0
        for (model, _), fields in zip(self.models, self._fields, strict=True):
            raw = row[start : start + len(fields)]
            start += len(fields)
            if all(value is None for value in raw):
                instances.append(None)
                continue
            values = []
            for field, value in zip(fields, raw, strict=True):
                for convert in field.get_db_converters(connection):
                    value = convert(value, field.cached_col, connection)
                values.append(value)
            instances.append(model.from_db(connection.alias, [f.attname for f in fields], values))
        return instances


def read_together(
    reads: Sequence[JoinedRead], params: Any, *, using: str = DEFAULT_DB_ALIAS
) -> list[list[tuple[list[Model | None], tuple[Any, ...]]]]:
    """Every row of each read (as `JoinedRead.split` gives it), in one round trip: the reads
    share `params`, and run one after another, each seeing what was committed when it
    started."""
    connection = connections[using]
    results = batch.execute([batch.Statement(read.sql, params) for read in reads], using=using)
    return [
        [read.split(row, connection) for row in result.rows or []]
        for read, result in zip(reads, results, strict=True)
    ]
