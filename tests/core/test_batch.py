"""apps.core.batch: several ORM writes in one round trip, all or nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DataError, connection, transaction

from apps.agents.models import AgentSession, SessionEvent
from apps.core import batch
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World

pytestmark = pytest.mark.django_db(transaction=True)


class RoundTrips:
    """Counts the queries Django sends (a multi-statement batch is one)."""

    def __init__(self) -> None:
        self.sql: list[str] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.sql.append(sql)
        return execute(sql, params, many, context)


def _session(world: World) -> AgentSession:
    return make_session(make_agent(world.tenant_a, [{"final": "ok"}]), world.alice)


def _event(session: AgentSession, kind: str, payload: dict[str, Any]) -> SessionEvent:
    return SessionEvent(tenant_id=session.tenant_id, session=session, type=kind, payload=payload)


def test_inserts_and_an_update_go_in_one_round_trip_with_their_results(world: World) -> None:
    session = _session(world)
    first, second = _event(session, "a", {"x": "50% ; DROP"}), _event(session, "b", [1, "é"])
    trips = RoundTrips()

    with connection.execute_wrapper(trips):
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

    assert len(trips.sql) == 1
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


def test_server_side_binding_sends_them_one_by_one_with_the_same_outcome(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = _session(world)
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "server_side_binding", True)
    trips = RoundTrips()

    with connection.execute_wrapper(trips), pytest.raises(DataError):
        batch.execute(
            [
                batch.insert(_event(session, "fine", {}), returning=True),
                batch.insert(_event(session, "bad", {"nul": "\u0000"}), returning=True),
            ]
        )

    assert len(trips.sql) == 2  # (the cursor itself still binds on the client here)
    assert not SessionEvent.objects.filter(session=session, type="fine").exists()
