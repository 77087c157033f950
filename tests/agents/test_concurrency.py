"""A worker keeps many turns in flight: a real worker (threads pool), real Postgres and Redis, a
model server on loopback reached through the openai SDK.

Parallelism is shown without a clock: the model server holds requests until enough of them
are in flight together, which a worker running turns one or two at a time never reaches.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, connections
from django.test import override_settings

from apps.agents import services
from apps.agents.models import Agent, AgentSession, SessionEvent, Turn, TurnStatus
from apps.llm.services import endpoint_save
from apps.tenants.models import Tenant
from config.celery import app
from tests.agents.conftest import make_session, wait_for_turn
from tests.agents.step_server import StepModelServer
from tests.conftest import WorkerProcess, World, client_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def servers() -> Iterator[list[StepModelServer]]:
    started: list[StepModelServer] = []
    yield started
    for server in started:
        server.stop()


def step_agent(
    tenant: Tenant,
    server: StepModelServer,
    *,
    slug: str,
    tools: list[str] | None = None,
    timeout_s: float = 60.0,
) -> Agent:
    endpoint = endpoint_save(
        tenant=tenant,
        name=f"step-{slug}",
        provider="openai",
        model="step-model",
        base_url=server.url,
        tier="small",
        timeout_s=timeout_s,
        price_input_per_mtok=Decimal("0.15"),
        price_output_per_mtok=Decimal("0.60"),
    )
    return services.agent_save(
        tenant=tenant,
        name=f"Agent {slug}",
        slug=slug,
        allowed_tools=tools or [],
        allowed_endpoints=[endpoint],
    )


def event_order(session: AgentSession) -> list[tuple[str, int]]:
    """(event type, turn seq) of the session's turn events, in log order."""
    seqs = dict(Turn.objects.filter(session=session).values_list("id", "seq"))
    return [
        (type_, seqs[turn_id])
        for type_, turn_id in SessionEvent.objects.filter(
            session=session, type__in=["turn.started", "turn.completed"]
        )
        .order_by("id")
        .values_list("type", "turn_id")
    ]


def test_sessions_run_in_parallel_and_each_session_one_turn_at_a_time(
    world: World, celery_worker: WorkerProcess, servers: list[StepModelServer]
) -> None:
    # First model calls wait until four are in flight at once: only four sessions running
    # together get past it (else the model answers 503 and the turns fail).
    server = StepModelServer([("clock_now", {"timezone": "UTC"})], gate=4, gate_step=0)
    servers.append(server)
    agent = step_agent(world.tenant_a, server, slug="parallel", tools=["clock_now"])
    sessions = [make_session(agent) for _ in range(4)]
    turns = [
        services.turn_enqueue(session=session, message=f"session {i} turn {seq}")
        for seq in (1, 2, 3)
        for i, session in enumerate(sessions)
    ]

    for turn in turns:
        wait_for_turn(turn)
        assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
    assert server.max_total_in_flight >= 4, "sessions did not run at the same time"
    for session in sessions:
        # Each turn started after the one before it had completed, in order.
        assert event_order(session) == [
            ("turn.started", 1),
            ("turn.completed", 1),
            ("turn.started", 2),
            ("turn.completed", 2),
            ("turn.started", 3),
            ("turn.completed", 3),
        ]
    assert all(most == 1 for most in server.max_in_flight.values())


def test_worker_killed_with_20_turns_in_flight_finishes_each_exactly_once(
    world: World, celery_worker: WorkerProcess, servers: list[StepModelServer], tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    server = StepModelServer(
        [
            ("append_line", {"path": str(ledger), "text": "{tag}: first"}),
            ("append_line", {"path": str(ledger), "text": "{tag}: second"}),
        ],
        hold_step=1,  # the second model call of every turn waits for the test
    )
    servers.append(server)
    agent = step_agent(world.tenant_a, server, slug="killed", tools=["append_line"])
    turns = [
        services.turn_enqueue(session=make_session(agent), message=f"turn {i}") for i in range(20)
    ]
    # All 20 turns ran their first (non-idempotent) tool call and wait on the model.
    assert server.wait_for(lambda s: s.held == 20), f"only {server.held} turns in flight"

    celery_worker.kill()
    server.release()
    celery_worker.start()

    for turn in turns:
        wait_for_turn(turn)
        assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
        assert turn.attempts == 2
    lines = sorted(ledger.read_text().splitlines())
    assert lines == sorted(f"turn {i}: {n}" for i in range(20) for n in ("first", "second"))
    for i in range(20):
        # The first model call was replayed from its checkpoint, not asked again; the one
        # cut by the kill was asked again.
        assert server.asked[f"turn {i}"] == [0, 1, 1, 2]
    completed = SessionEvent.objects.filter(turn__in=turns, type="turn.completed")
    assert completed.count() == 20
    assert sorted(str(e.turn_id) for e in completed) == sorted(str(t.id) for t in turns)


def _pooled_connections(pid: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [f"warden pid {pid}"],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


@override_settings(WARDEN_MAX_QUEUED_TURNS_PER_TENANT=60)
def test_a_burst_of_200_turns_is_accepted_or_refused_and_nothing_is_lost(
    world: World, celery_worker: WorkerProcess, servers: list[StepModelServer]
) -> None:
    # Every turn's model call waits until the burst is over: turns pile up as they would
    # behind a slow model.
    server = StepModelServer([], final="ok", hold_step=0)
    servers.append(server)
    agent = step_agent(world.tenant_a, server, slug="burst")
    sessions = [make_session(agent) for _ in range(10)]
    client_key = client_for(world.tenant_a, scopes=["write"])

    def post(i: int) -> tuple[int, dict[str, Any]]:
        try:
            session = sessions[i % len(sessions)]
            response = client_key.post(
                f"/api/v1/sessions/{session.id}/turns", {"message": f"m{i}"}, format="json"
            )
            return response.status_code, response.json()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(post, range(200)))
    # Ten turns (one per session) hold a model call; each holds one pooled connection.
    assert server.wait_for(lambda s: s.held == 10)
    in_use = _pooled_connections(celery_worker.pid)
    server.release()

    accepted = [body["id"] for status, body in answers if status == 202]
    refused = [(status, body["code"]) for status, body in answers if status != 202]
    assert set(refused) <= {(409, "too_many_queued_turns"), (503, "turn_backlog_full")}
    assert (503, "turn_backlog_full") in refused
    assert len(accepted) + len(refused) == 200
    # Nothing lost, nothing invented: exactly the accepted turns exist, and each completes once.
    turns = list(Turn.objects.filter(session__in=sessions))
    assert sorted(str(t.id) for t in turns) == sorted(accepted)
    for turn in turns:
        wait_for_turn(turn)
        assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
    for session in sessions:
        seqs = sorted(Turn.objects.filter(session=session).values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
    completed = SessionEvent.objects.filter(session__in=sessions, type="turn.completed")
    assert completed.count() == len(accepted)
    assert completed.values("turn_id").distinct().count() == len(accepted)
    # One connection per running turn, within the pool's bound.
    assert 10 <= in_use <= settings.WARDEN_DB_POOL_SIZE


def test_a_model_that_never_answers_is_cut_at_its_timeout_and_blocks_nobody(
    world: World, celery_worker: WorkerProcess, servers: list[StepModelServer]
) -> None:
    server = StepModelServer([], final="quick answer", hang_tags=frozenset({"hang 0", "hang 1"}))
    servers.append(server)
    hanging = step_agent(world.tenant_a, server, slug="hanging", timeout_s=5.0)
    answering = step_agent(world.tenant_a, server, slug="answering")
    hung = [
        services.turn_enqueue(session=make_session(hanging), message=f"hang {i}") for i in (0, 1)
    ]
    assert server.wait_for(lambda s: s.in_flight["hang 0"] and s.in_flight["hang 1"])

    quick = services.turn_enqueue(session=make_session(answering), message="quick")
    wait_for_turn(quick)
    assert quick.status == TurnStatus.COMPLETED and quick.final_answer == "quick answer"
    # It ran while both hung calls were still waiting: they held no one else up.
    assert server.in_flight["hang 0"] == 1 and server.in_flight["hang 1"] == 1

    for turn in hung:
        wait_for_turn(turn)
        assert turn.status == TurnStatus.FAILED
        assert turn.outcome == "provider_error" and "timed out" in turn.detail
    # The platform hung up on the model (its timeout), and the worker's slots are free.
    assert server.wait_for(lambda s: sorted(s.given_up) == ["hang 0", "hang 1"])
    active = app.control.inspect(destination=[celery_worker.name], timeout=5).active() or {}
    running = [task for tasks in active.values() for task in tasks]
    assert not any(str(turn.id) in str(task.get("args")) for turn in hung for task in running)
