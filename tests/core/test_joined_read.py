"""Several written-once reads in one round trip (apps/core/joined_read.py read_together)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core.joined_read import JoinedRead, read_together
from apps.tenants.models import Tenant
from tests.conftest import World
from tests.round_trips import round_trips

pytestmark = pytest.mark.django_db(transaction=True)

TABLE = Tenant._meta.db_table


def _reads() -> list[JoinedRead]:
    return [
        JoinedRead([(Tenant, "n")], f"FROM {TABLE} n WHERE n.id = %(a)s", extra="1"),
        JoinedRead([(Tenant, "n")], f"FROM {TABLE} n WHERE n.id IN (%(a)s, %(b)s) ORDER BY n.slug"),
        JoinedRead([(Tenant, "n")], f"FROM {TABLE} n WHERE n.slug = 'no-such-tenant'"),
    ]


def _ids(rows: list[list[tuple[list[Any], tuple[Any, ...]]]]) -> list[list[object]]:
    return [[getattr(models[0], "id", None) for models, _ in read] for read in rows]


def test_each_read_gets_its_own_rows_in_one_round_trip(world: World) -> None:
    a, b = world.tenant_a, world.tenant_b

    with round_trips() as trips:
        rows = read_together(_reads(), {"a": str(a.id), "b": str(b.id)})

    both = sorted([a, b], key=lambda t: t.slug)
    assert _ids(rows) == [[a.id], [t.id for t in both], []]
    [(models, extra)] = rows[0]
    loaded = Tenant.objects.get(id=a.id)
    for field in Tenant._meta.concrete_fields:
        assert getattr(models[0], field.attname) == getattr(loaded, field.attname), field.name
    assert extra == (1,)
    assert len(trips) == 1  # all three, pipelined
