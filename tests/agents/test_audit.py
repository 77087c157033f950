"""The audit log: every stored event is sealed into its session's hash chain by the database
as its transaction commits; `audit verify` recomputes the chain in Python and names the first
event that was changed, deleted or reordered behind the application's back; the export
serves the chain with its canonical texts, to the tenant's admins only.

Tampering is done the way an attacker with database access would: raw SQL, with the
append-only trigger switched off inside the attacker's own transaction."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from rest_framework.test import APIClient

from apps.agents import audit, orchestrator, services
from apps.agents.events import event_record, new_event
from apps.agents.models import (
    AgentSession,
    EventLogAppendOnly,
    SessionChainHead,
    SessionEvent,
    Turn,
)
from apps.core import batch
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World, client_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]

SCRIPT: list[dict[str, Any]] = [
    {"tool": "clock_now", "arguments": {"timezone": "UTC"}, "say": "Checking the time."},
    {"tool": "calculator", "arguments": {"expression": "6 * 7"}, "say": "Calculating."},
    {"final": "Time: ${tool_result_1}. Answer: ${tool_result_2}."},
]


def run_turns(world: World, n: int = 2, slug: str = "audited") -> AgentSession:
    """A session with `n` finished turns, written by POST-path enqueue and the in-process loop."""
    agent = make_agent(world.tenant_a, SCRIPT, tools=["clock_now", "calculator"], slug=slug)
    session = make_session(agent, world.alice)
    for i in range(n):
        turn = services.turn_enqueue(session=session, message=f"what time is it? {i}")
        assert orchestrator.turn_execute(turn_id=turn.id) == "completed"
    return session


def chain(session: AgentSession) -> list[SessionEvent]:
    return list(SessionEvent.objects.filter(session=session).order_by("chain_seq"))


def verify(*sessions: AgentSession) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `manage.py audit verify [<session> …]`."""
    out, err = StringIO(), StringIO()
    try:
        call_command("audit", "verify", *[str(s.id) for s in sessions], stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue() + str(exc)
    return 0, out.getvalue(), err.getvalue()


def tamper(sql: str, *params: Any) -> None:
    """Raw SQL as an attacker with DDL rights runs it: triggers off in their own transaction."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ALTER TABLE agents_sessionevent DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # foreign keys checked now
        cursor.execute("ALTER TABLE agents_sessionevent ENABLE TRIGGER USER")


# ------------------------------------------------------------------------------ the chain


def test_every_event_is_sealed_in_order_and_verifies(world: World) -> None:
    session = run_turns(world)
    events = chain(session)
    assert len(events) > 10
    assert [e.chain_seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].prev_hash == audit.GENESIS
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    head = SessionChainHead.objects.get(session=session)
    assert (head.last_seq, head.last_hash) == (events[-1].chain_seq, events[-1].hash)

    status, out, _ = verify(session)
    assert status == 0
    assert f"intact: 1 sessions, {len(events)} events" in out


def test_the_python_canonical_form_matches_what_the_database_hashed(world: World) -> None:
    # Text the two renderings could disagree on: non-ASCII, escapes, key order, numbers, a
    # timestamp on a whole second (its microseconds still printed), no turn.
    session = make_session(make_agent(world.tenant_a, SCRIPT, slug="canon"))
    payload = {
        "zeta": "naïve — 東京 🚀",
        "a": 'quote " backslash \\ newline \n tab \t nul-ish \u0001',
        "nums": [1, 1.5, -0.25, 10**20, 1e-7, True, None],
        "nested": {"bb": 1, "a": {"c": []}},
    }
    row = event_record(session=session, event="custom.check", data=payload)
    stored = SessionEvent.objects.get(id=row.id)
    assert stored.chain_seq == 1

    [page_event] = audit.session_audit_page(session=session).links
    text = page_event.canonical
    assert text is not None
    assert hashlib.sha256(text.encode()).hexdigest() == stored.hash
    lines = text.split("\n")
    assert lines[:7] == [
        "warden-audit-v1",
        audit.GENESIS,
        str(world.tenant_a.id),
        str(session.id),
        "1",
        str(row.id),
        "",
    ]
    assert lines[7] == stored.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert lines[8] == "custom.check"
    assert json.loads(lines[9]) == payload  # the jsonb text is the payload, one line

    # The timestamp form, on a whole second, from both sides.
    whole = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT agents_event_canonical(%s, %s, %s, 7, 9, NULL, %s, 't', '{}'::jsonb)",
            [audit.GENESIS, world.tenant_a.id, session.id, whole],
        )
        [(db_text,)] = cursor.fetchall()
    assert db_text == audit.canonical(
        prev_hash=audit.GENESIS,
        tenant_id=world.tenant_a.id,
        session_id=session.id,
        seq=7,
        event_id=9,
        turn_id=None,
        created_at=whole,
        type="t",
        payload_text="{}",
    )
    assert db_text.split("\n")[7] == "2026-01-02T03:04:05.000000Z"


def test_events_are_append_only(world: World) -> None:
    session = run_turns(world, n=1)
    event = chain(session)[0]
    with pytest.raises(IntegrityError, match="append-only"):
        SessionEvent.objects.filter(id=event.id).update(payload={"forged": True})
    event.payload = {"forged": True}
    with pytest.raises(EventLogAppendOnly):
        event.save()
    with pytest.raises(EventLogAppendOnly):
        event.delete()
    assert verify(session)[0] == 0


def test_a_session_deleted_takes_its_whole_chain_and_head(world: World) -> None:
    session = run_turns(world, n=1)
    kept = run_turns(world, n=1, slug="kept")
    session.delete()  # its turns and events go with it
    assert not SessionEvent.objects.filter(session_id=session.id).exists()
    assert not SessionChainHead.objects.filter(session_id=session.id).exists()
    status, out, _ = verify()
    assert status == 0 and "intact: 1 sessions" in out
    assert SessionChainHead.objects.filter(session=kept).exists()


def test_an_event_written_and_deleted_in_one_transaction_leaves_no_link(world: World) -> None:
    session = run_turns(world, n=1)
    before = SessionChainHead.objects.get(session=session).last_seq
    with transaction.atomic():
        row = event_record(session=session, event="custom.gone", data={})
        # The sealing trigger runs at commit; the row is gone by then (as when a session is
        # deleted in the transaction that wrote its last event).
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM agents_sessionevent WHERE id = %s", [row.id])
    assert SessionChainHead.objects.get(session=session).last_seq == before
    assert verify(session)[0] == 0

    # A new session's first event and the session itself, gone in the transaction that
    # wrote them: the commit must not try to give the deleted session a chain head.
    with transaction.atomic():
        fresh = make_session(session.agent)
        event_record(session=fresh, event="custom.first", data={})
        fresh.delete()
    assert not SessionChainHead.objects.filter(session_id=fresh.id).exists()


# ------------------------------------------------------------------------------ tampering


@pytest.fixture
def sealed(world: World) -> Iterator[tuple[AgentSession, list[SessionEvent]]]:
    session = run_turns(world)
    yield session, chain(session)


def test_a_changed_row_is_named(sealed: tuple[AgentSession, list[SessionEvent]]) -> None:
    session, events = sealed
    target = events[4]
    tamper(
        "UPDATE agents_sessionevent SET payload = payload || '{\"forged\": 1}' WHERE id = %s",
        target.id,
    )
    status, _, err = verify(session)
    assert status == 1
    assert f"session {session.id}: altered at seq 5, event id {target.id}" in err


def test_a_changed_type_or_time_is_named(sealed: tuple[AgentSession, list[SessionEvent]]) -> None:
    session, events = sealed
    tamper(
        "UPDATE agents_sessionevent SET created_at = created_at + interval '1 microsecond' "
        "WHERE id = %s",
        events[2].id,
    )
    tamper("UPDATE agents_sessionevent SET type = 'turn.completed' WHERE id = %s", events[7].id)
    status, _, err = verify(session)
    assert status == 1 and f"altered at seq 3, event id {events[2].id}" in err  # the first


def test_a_deleted_row_is_named(sealed: tuple[AgentSession, list[SessionEvent]]) -> None:
    session, events = sealed
    tamper("DELETE FROM agents_sessionevent WHERE id = %s", events[3].id)
    status, _, err = verify(session)
    assert status == 1
    assert f"missing at seq 4, event id {events[4].id}: no event with seq 4" in err


def test_a_deleted_last_row_is_named(sealed: tuple[AgentSession, list[SessionEvent]]) -> None:
    session, events = sealed
    tamper("DELETE FROM agents_sessionevent WHERE id = %s", events[-1].id)
    status, _, err = verify(session)
    assert status == 1
    assert f"missing at seq {len(events)}" in err and "its head is at" in err


def test_a_deleted_row_with_the_rest_renumbered_is_named(
    sealed: tuple[AgentSession, list[SessionEvent]],
) -> None:
    session, events = sealed
    tamper("DELETE FROM agents_sessionevent WHERE id = %s", events[3].id)
    # Through free seqs: (session, chain_seq) is unique.
    tamper(
        "UPDATE agents_sessionevent SET chain_seq = chain_seq + 100000 "
        "WHERE session_id = %s AND chain_seq > 4",
        session.id,
    )
    tamper(
        "UPDATE agents_sessionevent SET chain_seq = chain_seq - 100001 "
        "WHERE session_id = %s AND chain_seq > 100000",
        session.id,
    )
    tamper(
        "UPDATE agents_sessionchainhead SET last_seq = last_seq - 1 WHERE session_id = %s",
        session.id,
    )
    status, _, err = verify(session)
    assert status == 1
    assert f"reordered at seq 4, event id {events[4].id}" in err


def test_a_reordered_row_is_named(sealed: tuple[AgentSession, list[SessionEvent]]) -> None:
    session, events = sealed
    a, b = events[5], events[6]
    # Swap their places in the chain (through a free seq: the pair is unique).
    tamper("UPDATE agents_sessionevent SET chain_seq = 0 WHERE id = %s", a.id)
    tamper("UPDATE agents_sessionevent SET chain_seq = 6 WHERE id = %s", b.id)
    tamper("UPDATE agents_sessionevent SET chain_seq = 7 WHERE id = %s", a.id)
    status, _, err = verify(session)
    assert status == 1
    assert f"reordered at seq 6, event id {b.id}" in err


def test_swapped_ids_are_named(sealed: tuple[AgentSession, list[SessionEvent]]) -> None:
    # The API and the event stream order by id: swapping two rows' ids reorders what they show.
    session, events = sealed
    a, b = events[1], events[2]
    tamper("UPDATE agents_sessionevent SET id = -1 WHERE id = %s", a.id)
    tamper("UPDATE agents_sessionevent SET id = %s WHERE id = %s", a.id, b.id)
    tamper("UPDATE agents_sessionevent SET id = %s WHERE id = -1", b.id)
    status, _, err = verify(session)
    assert status == 1 and f"altered at seq 2, event id {b.id}" in err


def test_a_deleted_head_or_forged_row_is_named(
    sealed: tuple[AgentSession, list[SessionEvent]],
) -> None:
    session, events = sealed
    tamper(
        "INSERT INTO agents_sessionevent (tenant_id, session_id, type, payload, created_at, "
        "updated_at, prev_hash, hash, trace_id) SELECT tenant_id, session_id, 'forged', '{}', "
        "now(), now(), '', '', '' FROM agents_sessionevent WHERE id = %s",
        events[0].id,
    )
    status, _, err = verify(session)
    assert status == 1 and "unsealed" in err
    tamper("DELETE FROM agents_sessionevent WHERE type = 'forged'")
    SessionChainHead.objects.filter(session=session).delete()
    status, _, err = verify(session)
    assert status == 1 and "no chain head" in err


def test_verify_checks_every_session_and_names_only_the_damaged(world: World) -> None:
    good = run_turns(world, n=1, slug="good")
    bad = run_turns(world, n=1, slug="bad")
    other = run_turns(world, n=1, slug="other")
    target = chain(bad)[2]
    tamper("UPDATE agents_sessionevent SET payload = '{}' WHERE id = %s", target.id)

    status, _, err = verify()
    assert status == 1
    assert f"session {bad.id}: altered at seq 3, event id {target.id}" in err
    assert str(good.id) not in err and str(other.id) not in err
    assert "1 of 3 session chains damaged" in err
    assert verify(good, other)[0] == 0


def test_verify_refuses_what_is_not_a_session(world: World) -> None:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as bad_id:
        call_command("audit", "verify", "not-a-uuid", stdout=out, stderr=err)
    assert bad_id.value.returncode == 2
    with pytest.raises(CommandError) as unknown:
        call_command("audit", "verify", "00000000-0000-0000-0000-000000000000")
    assert unknown.value.returncode == 2 and "No such session" in str(unknown.value)


# ------------------------------------------------------------------------------ the export


def export(client: APIClient, session: AgentSession, **params: Any) -> Any:
    return client.get(f"/api/v1/sessions/{session.id}/audit", params)


def test_export_pages_through_the_chain_and_it_recomputes(world: World) -> None:
    session = run_turns(world)
    events = chain(session)
    client = client_for(world.tenant_a, ["admin"])
    seen: list[dict[str, Any]] = []
    after = 0
    pages = 0
    while True:
        response = export(client, session, after_seq=after, limit=4)
        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["damage"] is None
        seen += body["events"]
        pages += 1
        if body["next_after_seq"] is None:
            break
        after = body["next_after_seq"]
    assert pages == -(-len(events) // 4)
    assert [e["seq"] for e in seen] == list(range(1, len(events) + 1))
    assert [e["id"] for e in seen] == [e.id for e in events]
    assert body["head"] == {"seq": events[-1].chain_seq, "hash": events[-1].hash}
    # What an external archiver does: recompute each hash from the canonical text, follow
    # the links, and find the payload it was given inside that text.
    previous = audit.GENESIS
    for event in seen:
        assert event["intact"] and event["linked"]
        assert hashlib.sha256(event["canonical"].encode()).hexdigest() == event["hash"]
        assert event["canonical"].split("\n")[1] == event["prev_hash"] == previous
        assert json.loads(event["canonical"].split("\n")[-1]) == event["payload"]
        previous = event["hash"]


def test_export_reports_damage_instead_of_failing(world: World) -> None:
    session = run_turns(world)
    events = chain(session)
    tamper("UPDATE agents_sessionevent SET payload = '{\"x\": 1}' WHERE id = %s", events[5].id)
    tamper("DELETE FROM agents_sessionevent WHERE id = %s", events[8].id)
    client = client_for(world.tenant_a, ["admin"])

    body = export(client, session, after_seq=4, limit=3).json()
    assert body["damage"] == {
        "problem": "altered",
        "seq": 6,
        "event_id": events[5].id,
        "detail": "its content does not match its hash",
    }
    assert [e["intact"] for e in body["events"]] == [True, False, True]
    body = export(client, session, after_seq=7, limit=3).json()
    assert body["damage"]["problem"] == "missing" and body["damage"]["seq"] == 9
    assert export(client, session, after_seq=9).json()["damage"]["problem"] == "missing"
    past = export(client, session, after_seq=len(events) + 5).json()
    assert past["events"] == [] and past["damage"] is None and past["next_after_seq"] is None


def test_export_is_for_the_tenants_admins_only(world: World, alice_client: APIClient) -> None:
    session = run_turns(world, n=1)
    assert export(alice_client, session).status_code == 200  # owner
    bob = APIClient()
    bob.force_login(world.bob)
    response = export(bob, session)  # a member, on his own tenant
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    for scopes in (["read"], ["write"]):
        assert export(client_for(world.tenant_a, scopes), session).status_code == 403
    # Charlie owns the other tenant: this session does not exist for him.
    charlie = APIClient()
    charlie.force_login(world.charlie)
    response = export(charlie, session)
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert export(client_for(world.tenant_b, ["admin"]), session).status_code == 404
    assert export(APIClient(), session).status_code in (401, 403)


@pytest.mark.parametrize(
    "params",
    [
        {"after_seq": "-1"},
        {"after_seq": "x"},
        {"after_seq": str(2**63)},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "1.5"},
    ],
)
def test_export_refuses_bad_paging(world: World, params: dict[str, str]) -> None:
    session = run_turns(world, n=1)
    response = export(client_for(world.tenant_a, ["admin"]), session, **params)
    assert response.status_code == 400
    assert response.json()["code"]


def test_export_of_a_session_without_events(world: World) -> None:
    session = make_session(make_agent(world.tenant_a, SCRIPT, slug="empty"))
    body = export(client_for(world.tenant_a, ["admin"]), session).json()
    assert body["events"] == [] and body["damage"] is None
    assert body["head"] == {"seq": 0, "hash": audit.GENESIS}
    assert verify(session)[0] == 0
    assert Turn.objects.filter(session=session).count() == 0


# ------------------------------------------------------------------------------ locking


def test_a_finishing_turn_and_a_new_message_never_deadlock_on_the_chain(world: World) -> None:
    # The two lock orders the writers have: a turn's batch writes its events and then updates
    # the session row; POST /turns locks the session row and then writes its event. Here the
    # batch is made to wait on the session row after its event INSERT, while the POST path
    # holds that row and writes its own event. Sealing at commit takes the chain head last,
    # so both commit; a head taken at INSERT time would be a deadlock (one would fail).
    session = run_turns(world, n=1)
    batch_pid: list[int] = []
    failures: list[BaseException] = []

    def finishing_turn() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                batch_pid[:] = [cursor.fetchone()[0]]
            batch.execute(
                [
                    batch.insert(new_event(session=session, event="turn.completed", data={})),
                    batch.update(AgentSession.objects.filter(id=session.id), title="done"),
                ]
            )
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()

    with transaction.atomic():
        AgentSession.objects.select_for_update().get(id=session.id)
        thread = threading.Thread(target=finishing_turn)
        thread.start()
        # Until the batch waits on the session row this transaction holds.
        with connection.cursor() as cursor:
            for _ in range(600):
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s) "
                    "AND wait_event_type = 'Lock'",
                    [batch_pid],
                )
                if cursor.fetchone()[0]:
                    break
                threading.Event().wait(0.05)
            else:
                raise AssertionError("the batch never waited on the session row")
        event_record(session=session, event="turn.accepted", data={"seq": 2})
    thread.join(30)
    assert not failures, failures
    assert verify(session)[0] == 0
    # The POST path committed first: its event comes first in the chain, though its id is
    # the later one.
    last = chain(session)[-2:]
    assert [e.type for e in last] == ["turn.accepted", "turn.completed"]
    assert last[0].id > last[1].id
