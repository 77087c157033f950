"""A session's events are read by one index with their tenant (agents migration 0008), not
by ANDing the session's index with every entry of the tenant's."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.db import connection

from apps.agents import selectors
from apps.agents.models import Agent, AgentSession, SessionEvent
from apps.tenants.models import Tenant
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World

pytestmark = pytest.mark.django_db(transaction=True)


def _history(agent: Agent, sessions: int, each: int) -> None:
    """`sessions` sessions of the agent's tenant with `each` events apiece (bulk)."""
    rows = AgentSession.objects.bulk_create(
        [AgentSession(tenant_id=agent.tenant_id, agent=agent) for _ in range(sessions)]
    )
    SessionEvent.objects.bulk_create(
        [
            SessionEvent(tenant_id=agent.tenant_id, session=row, type="note", payload={})
            for row in rows
            for _ in range(each)
        ]
    )


def _indexes(plan: Any) -> set[str]:
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= _indexes(child)
    return found


def _plan_indexes(session: AgentSession) -> set[str]:
    sql, params = selectors.event_list_after(session=session, after_id=0).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE agents_sessionevent")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        [[plan]] = cursor.fetchall()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return _indexes(plan[0]["Plan"])


def test_a_sessions_events_are_read_by_its_index_not_the_tenants(world: World) -> None:
    # A tenant's history in other sessions, among other tenants' (on the bench database one
    # tenant held ~8 % of the events, in sessions of a dozen or two).
    busy = make_agent(world.tenant_a, [{"final": "ok"}], slug="busy")
    _history(busy, 40, 24)
    for n in range(6):
        tenant = Tenant.objects.create(name=f"Other {n}", slug=f"other-{uuid.uuid4().hex[:8]}")
        _history(make_agent(tenant, [{"final": "ok"}], slug="other"), 80, 24)
    session = make_session(busy)
    SessionEvent.objects.bulk_create(
        [SessionEvent(tenant_id=session.tenant_id, session=session, type="note") for _ in range(12)]
    )

    used = _plan_indexes(session)

    assert used == {"event_session_tenant_id"}, used
    rows = list(selectors.event_list_after(session=session, after_id=0))
    assert len(rows) == 12 and {r.session_id for r in rows} == {session.id}
