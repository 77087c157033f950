"""apps.core.batch: several ORM writes in one round trip, all or nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DataError, connection, transaction

from apps.agents.models import AgentSession, SessionEvent
from apps.core import batch
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World
from tests.round_trips import round_trips

pytestmark = pytest.mark.django_db(transaction=True)


def _session(world: World) -> AgentSession:
    return make_session(make_agent(world.tenant_a, [{"final": "ok"}]), world.alice)


def _event(session: AgentSession, kind: str, payload: dict[str, Any]) -> SessionEvent:
    return SessionEvent(tenant_id=session.tenant_id, session=session, type=kind, payload=payload)


def test_inserts_and_an_update_go_in_one_round_trip_with_their_results(world: World) -> None:
    session = _session(world)
    first, second = _event(session, "a", {"x": "50% ; DROP"}), _event(session, "b", [1, "é"])
    with round_trips() as trips:
        results = batch.execute(
            [
                batch.insert(first, returning=True),
                batch.insert(second, returning=True),
                batch.update(AgentSession.objects.filter(id=session.id), title="renamed"),
                batch.update(
                    AgentSession.objects.filter(id=session.id, title="no such"), title="x"
                ),
            ]
        )

    assert len(trips) == 1
    ids = [results[0].rows[0][0], results[1].rows[0][0]]  # type: ignore[index]
    assert ids[1] > ids[0]
    assert [r.rowcount for r in results[2:]] == [1, 0] and results[2].rows is None
    stored = {e.id: e for e in SessionEvent.objects.filter(id__in=ids)}
    # Stored as save() stores them: JSON as given (text with SQL in it stays text), the
    # auto_now timestamps set.
    assert stored[ids[0]].payload == {"x": "50% ; DROP"} and stored[ids[1]].payload == [1, "é"]
    assert all(e.created_at and e.updated_at for e in stored.values())
    assert AgentSession.objects.get(id=session.id).title == "renamed"


def test_a_statement_the_database_refuses_leaves_none_of_the_batch_written(world: World) -> None:
    session = _session(world)
    before = SessionEvent.objects.count()

    with pytest.raises(DataError):  # PostgreSQL refuses \u0000 in jsonb
        batch.execute(
            [
                batch.insert(_event(session, "fine", {"ok": True}), returning=True),
                batch.update(AgentSession.objects.filter(id=session.id), title="renamed"),
                batch.insert(_event(session, "bad", {"nul": "\u0000"}), returning=True),
            ]
        )

    assert SessionEvent.objects.count() == before
    assert AgentSession.objects.get(id=session.id).title != "renamed"


def test_inside_a_transaction_the_batch_rolls_back_with_it(world: World) -> None:
    session = _session(world)
    before = SessionEvent.objects.count()

    with pytest.raises(RuntimeError), transaction.atomic():
        batch.execute(
            [
                batch.insert(_event(session, "one", {}), returning=True),
                batch.insert(_event(session, "two", {}), returning=True),
            ]
        )
        raise RuntimeError("the caller fails after the batch")

    assert SessionEvent.objects.count() == before


def test_a_connection_prepares_the_statements_it_sends_again(world: World) -> None:
    # Planned once per connection, not at every step of every turn (issue 8).
    session = _session(world)
    touch = batch.update(AgentSession.objects.filter(id=session.id), title="again")
    for _ in range(3):
        batch.execute([touch, batch.insert(_event(session, "seen", {}), returning=True)])

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any(s.startswith('UPDATE "agents_agentsession"') for s in prepared), prepared
    assert any(s.startswith('INSERT INTO "agents_sessionevent"') for s in prepared), prepared


def test_without_server_side_binding_it_says_what_to_set(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _session(world)
    monkeypatch.delitem(connection.settings_dict["OPTIONS"], "server_side_binding")

    with pytest.raises(ImproperlyConfigured, match="server_side_binding"):
        batch.execute(
            [batch.insert(_event(session, "a", {})), batch.insert(_event(session, "b", {}))]
        )

    assert not SessionEvent.objects.filter(session=session).exists()


def test_an_insert_compiled_once_gives_what_django_compiles_for_each_row(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db.models import Value
    from django.db.models.functions import Lower
    from django.utils import timezone
    from psycopg.types.json import Jsonb

    session = _session(world)
    first, second = _event(session, "a", {"n": 1}), _event(session, "b", ["x", None])
    monkeypatch.setattr(batch, "_insert_sql", {})
    batch.insert(first, returning=True)  # compiled, and kept
    instant = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: instant)  # auto_now, both times

    cached = batch.insert(second, returning=True)
    monkeypatch.setattr(batch, "_insert_sql", {})
    compiled = batch.insert(second, returning=True)

    def values(statement: batch.Statement) -> list[Any]:
        return [p.obj if isinstance(p, Jsonb) else p for p in statement.params]

    assert cached.sql == compiled.sql
    assert values(cached) == values(compiled)
    assert instant in values(cached) and ["x", None] in values(cached)
    monkeypatch.undo()
    # A row holding an expression is compiled whole, not given the plain row's SQL.
    batch.insert(first, returning=True)
    third = _event(session, "", {})
    third.type = Lower(Value("C"))  # type: ignore[assignment]
    with_expression = batch.insert(third, returning=True)
    assert "LOWER(" in with_expression.sql
    batch.execute([with_expression, batch.insert(_event(session, "d", {}), returning=True)])
    assert SessionEvent.objects.filter(session=session, type__in=["c", "d"]).count() == 2


def test_several_rows_are_one_insert_with_a_values_list_each_in_their_order(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.utils import timezone

    session = _session(world)
    monkeypatch.setattr(batch, "_insert_sql", {})
    three = [_event(session, n, {"n": n}) for n in ("a", "b", "c")]
    instant = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: instant)  # auto_now, every time

    several = batch.insert_rows(three, returning=True)
    # Each row's values are what Django compiles for that row alone.
    monkeypatch.setattr(batch, "_insert_sql", {})
    alone = [batch.insert(event, returning=True) for event in three]

    def values(params: Any) -> list[Any]:
        return [getattr(v, "obj", v) for v in params]

    assert several.sql.count("(%s, ") == 3 and several.sql.endswith(alone[0].sql.split(")")[-1])
    assert values(several.params) == [v for each in alone for v in values(each.params)]
    monkeypatch.undo()
    [result] = batch.execute([several])
    # One row back per event, in their order.
    ids = [row[0] for row in result.rows or []]
    assert len(ids) == 3 and ids == sorted(ids)
    stored = SessionEvent.objects.in_bulk(ids)
    assert [stored[i].type for i in ids] == ["a", "b", "c"]
    assert [stored[i].payload for i in ids] == [{"n": "a"}, {"n": "b"}, {"n": "c"}]
