"""Migration 0005 chains the events a populated database already holds: in id order per
session, and new events continue each chain where the backfill left it.

The migrations are run by hand on the suite's test database (as in test_tool_job_migration):
back to agents 0004, events written through the old schema, forward again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.agents.events import event_record
from apps.agents.models import AgentSession, SessionChainHead, SessionEvent
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World

pytestmark = pytest.mark.django_db(transaction=True)


def migrate(targets: list[tuple[str, str]] | None = None) -> None:
    executor = MigrationExecutor(connection)  # a fresh loader: it sees what is applied now
    executor.migrate(targets or executor.loader.graph.leaf_nodes())


@pytest.fixture
def before_the_chain() -> Iterator[None]:
    try:
        migrate([("agents", "0004_budgets")])
        yield
    finally:
        migrate()  # the latest state again, for the rest of the suite


def test_existing_events_are_chained_in_id_order(world: World, before_the_chain: None) -> None:
    agent = make_agent(world.tenant_a, [{"final": "a"}], slug="old")
    sessions: list[AgentSession] = [make_session(agent), make_session(agent)]
    with connection.cursor() as cursor:
        for i in range(6):  # interleaved: the two sessions' ids alternate
            session = sessions[i % 2]
            cursor.execute(
                "INSERT INTO agents_sessionevent (tenant_id, session_id, type, payload, "
                "created_at, updated_at) VALUES (%s, %s, %s, %s, now(), now())",
                [session.tenant_id, session.id, f"old.{i}", json.dumps({"n": i})],
            )

    migrate()

    for session in sessions:
        rows = list(SessionEvent.objects.filter(session=session).order_by("id"))
        assert [row.chain_seq for row in rows] == [1, 2, 3]
        assert SessionChainHead.objects.get(session=session).last_hash == rows[-1].hash
    # New events carry on from the backfilled head, and the whole chain verifies.
    event_record(session=sessions[0], event="new.one", data={})
    assert SessionEvent.objects.get(type="new.one").chain_seq == 4
    out = StringIO()
    call_command("audit", "verify", stdout=out)
    assert "intact: 2 sessions, 7 events" in out.getvalue()
