"""Budgets and rate limits end to end, through real Celery workers: two worker processes on a
queue of the test's own (tests/agents/queue_settings.py), a model server on loopback, the
suite's Postgres and Redis.

- A worker SIGKILLed between a model call's reserve and settle: the turn resumes on the other
  worker, the beat's `budgets.reconcile` charges the dead call's hold, and the ledger ends
  consistent — Redis counters equal the sum of the usage rows, nothing stays held, and the
  budget is not overspent.
- Two workers serving one tenant's turns at once share its requests-per-minute window: exactly
  the limit reaches the model, every other turn stops `rate_limited` naming the window, and
  the next message is refused at the door with 429.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from celery import current_app
from django.db import connection, connections
from django.db.models import Sum

from apps.agents import services
from apps.agents.models import Agent, SessionEvent, Turn, TurnStatus
from apps.agents.services import RUN_TURN_TASK
from apps.budgets.ledger.types import Cap, to_micros
from apps.budgets.models import Budget, TenantBudgetSettings, UsageKind, UsageRecord
from apps.budgets.services import ledger as budget_ledger
from apps.llm.services import endpoint_save
from apps.tenants.models import Tenant
from tests.agents.conftest import make_session, wait_for_turn
from tests.agents.step_server import StepModelServer
from tests.conftest import WorkerProcess, World, _test_env, client_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

PRICE = Decimal("1000")  # per million tokens, each way: a hold of ~1100 tokens is ~1.1
# A call holds its prompt's bound plus 1024 output tokens: at least this much money.
ONE_HOLD_FLOOR = Decimal(1024) * PRICE / 1_000_000
# How long the model endpoint may take in the crash test; with no grace (the workers'
# environment there), a hold is past its deadline this long after its reserve. The call is held
# at the model until the worker is killed, which must come sooner.
CALL_TIMEOUT_S = 8.0


class Workers:
    """Two workers on a queue of the test's own, started with `extra` environment."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.running: list[WorkerProcess] = []

    def start(self, count: int, **extra: str) -> list[WorkerProcess]:
        env = {
            **_test_env(),
            "DJANGO_SETTINGS_MODULE": "tests.agents.queue_settings",
            "WARDEN_TEST_QUEUE": self.queue,
            **extra,
        }
        started = []
        for _ in range(count):
            worker = WorkerProcess(env)
            self.running.append(worker)
            worker.start()
            started.append(worker)
        return started

    def send(self, task: str, *args: Any) -> None:
        """Send a task by name to these workers, as beat (or a dispatch) would."""
        current_app.send_task(task, args=list(args), queue=self.queue)


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Workers]:
    own = Workers(f"budget-e2e-{uuid.uuid4().hex[:8]}")

    def dispatch(*, turn_id: Any, session_id: Any = None, tenant_id: Any = None) -> None:
        # onto the test's queue, with what turn_dispatch sends
        ids = [session_id, tenant_id] if session_id else []
        own.send(RUN_TURN_TASK, str(turn_id), *(str(i) for i in ids if i))

    monkeypatch.setattr("apps.agents.services.turn_dispatch", dispatch)
    yield own
    for worker in own.running:
        worker.stop()


def until(predicate: Callable[[], bool], what: str, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def priced_agent(
    tenant: Tenant, server: StepModelServer, *, slug: str, timeout_s: float = CALL_TIMEOUT_S
) -> Agent:
    endpoint = endpoint_save(
        tenant=tenant,
        name=f"priced-{slug}",
        provider="openai",
        model="step-model",
        base_url=server.url,
        tier="small",
        timeout_s=timeout_s,
        price_input_per_mtok=PRICE,
        price_output_per_mtok=PRICE,
    )
    return services.agent_save(
        tenant=tenant, name=f"Agent {slug}", slug=slug, allowed_endpoints=[endpoint]
    )


def session_locks(worker: WorkerProcess) -> int:
    """How many agent-session advisory locks (namespace 1) the worker's connections hold:
    one per turn it is running."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted "
            "AND (l.classid::text::bigint >> 24) = 1 AND a.application_name = %s",
            [f"warden pid {worker.pid}"],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def open_holds(turn: Turn) -> list[str]:
    led = budget_ledger.ledger()
    ids = [
        rid.decode() if isinstance(rid, bytes) else str(rid)
        for rid in led.client.zrange(led.open_key, 0, -1)
    ]
    return [rid for rid in ids if rid.startswith(f"{turn.id}:")]


def tenant_cap(world: World, agent: Agent, budget: Budget) -> Cap:
    [cap] = [
        c
        for c in budget_ledger.caps_for_turn(
            tenant_id=world.tenant_a.id,
            agent_id=agent.id,
            user_id=None,
            session_id=None,
            turn_id=None,
        )
        if c.budget_id == str(budget.id)
    ]
    return cap


@pytest.fixture
def server() -> Iterator[StepModelServer]:
    # Every first model call waits at the server until the test releases it.
    model = StepModelServer([], final="ok", hold_step=0)
    yield model
    model.stop()


def test_a_worker_killed_between_reserve_and_settle_leaves_a_consistent_ledger(
    world: World, workers: Workers, server: StepModelServer
) -> None:
    first, second = workers.start(2, WARDEN_BUDGET_RESERVATION_GRACE_SECONDS="0")
    agent = priced_agent(world.tenant_a, server, slug="killed")
    # Room for two holds and a half: the dead call's hold and the resumed call's fit together.
    budget = Budget.objects.create(
        tenant=world.tenant_a,
        scope="tenant",
        period="day",
        max_cost=(ONE_HOLD_FLOOR * Decimal("2.5")).quantize(Decimal("0.0001")),
    )
    turn = services.turn_enqueue(session=make_session(agent), message="killed")

    # The call is reserved and in flight at the model: the worker running it is killed -9.
    assert server.wait_for(lambda s: s.held == 1), "the model call never arrived"
    [holder] = [w for w in (first, second) if session_locks(w) == 1]
    survivor = second if holder is first else first
    [dead_hold] = open_holds(turn)
    assert dead_hold == f"{turn.id}:0:model:0@1"
    cap = tenant_cap(world, agent, budget)
    held = budget_ledger.ledger().states([cap.counter])[cap.counter.key]
    assert held is not None and held.reserved_micros >= to_micros(ONE_HOLD_FLOOR)
    holder.kill()
    server.release()  # the dead worker's request ends; later ones are answered at once

    # The turn resumes on the surviving worker (beat's recover sweep finds its lock free)
    # and completes, its hold of its own settled; the dead call's hold is still open.
    workers.send("agents.recover_turns")
    wait_for_turn(turn, timeout=45)
    assert (turn.status, turn.attempts) == (TurnStatus.COMPLETED, 2), (turn.outcome, turn.detail)
    assert server.asked["killed"] == [0, 0]  # the dead call, then the resumed one
    assert open_holds(turn) == [dead_hold]
    assert survivor.proc is not None and survivor.proc.poll() is None

    # Past the hold's deadline, the beat task (run by the surviving worker) charges it once.
    led = budget_ledger.ledger()
    until(lambda: dead_hold in led.due(time.time(), 10_000), "the hold's deadline", 30)
    workers.send("budgets.reconcile")
    until(lambda: not open_holds(turn), "the reconciler")

    rows = {r.reservation_id: r for r in UsageRecord.objects.filter(tenant=world.tenant_a)}
    assert sorted(rows) == sorted([dead_hold, f"{turn.id}:0:model:0@2"])
    expired, call = rows[dead_hold], rows[f"{turn.id}:0:model:0@2"]
    assert (expired.kind, expired.estimated) == (UsageKind.EXPIRED_RESERVATION, True)
    assert expired.cost >= ONE_HOLD_FLOOR  # charged at the hold: it may have been billed
    assert (call.kind, call.input_tokens, call.output_tokens) == (UsageKind.CALL, 10, 5)
    # The turn and the session count the call that answered, once.
    assert (turn.input_tokens, turn.output_tokens) == (10, 5)
    turn.session.refresh_from_db()
    assert turn.session.tokens_used == 15

    # Redis agrees with the ledger a reload would give, nothing is held, and the budget held.
    state = led.states([cap.counter])[cap.counter.key]
    assert state is not None
    assert (state.reserved_tokens, state.reserved_micros) == (0, 0)
    tokens, micros, cost = budget_ledger.ledger_sums(cap.counter)
    assert (state.spent_tokens, state.spent_micros) == (tokens, micros)
    assert cost == sum(r.cost for r in rows.values())
    assert budget.max_cost is not None and cost <= budget.max_cost
    # Reconciling again charges nothing twice. (What it returns counts every open hold in
    # Redis, other tests' killed turns' too: this tenant's ledger is what must not change.)
    budget_ledger.reservations_reconcile(now_s=time.time() + 3600)
    assert sorted(
        UsageRecord.objects.filter(tenant=world.tenant_a).values_list("reservation_id", flat=True)
    ) == sorted(rows)


RPM = 5
TURNS = 12


def test_two_workers_share_one_tenant_rate_window(
    world: World, workers: Workers, server: StepModelServer
) -> None:
    TenantBudgetSettings.objects.create(tenant=world.tenant_a, rpm_per_tenant=RPM)
    # The calls wait at the model while the second worker starts: no timeout may cut them.
    agent = priced_agent(world.tenant_a, server, slug="limited", timeout_s=120.0)
    sessions = [make_session(agent) for _ in range(TURNS + 1)]
    client = client_for(world.tenant_a, scopes=["write"])

    def post(i: int) -> Any:
        try:
            return client.post(
                f"/api/v1/sessions/{sessions[i].id}/turns", {"message": f"t{i}"}, format="json"
            )
        finally:
            connections.close_all()

    # No worker runs yet: the window is empty and every message is admitted and queued.
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(post, range(TURNS)))
    assert [a.status_code for a in answers] == [202] * TURNS
    turns = [Turn.objects.get(id=a.json()["id"]) for a in answers]
    # Three turns at a time per worker: the RPM calls held at the model need both workers.
    first, second = workers.start(2, WARDEN_WORKER_TURNS="3")

    # RPM calls are admitted and held at the model, on both workers; every other turn stops
    # at its reserve, while those calls are still in flight.
    assert server.wait_for(lambda s: s.held == RPM), f"{server.held} calls held"

    def refused() -> list[Turn]:
        return list(Turn.objects.filter(id__in=[t.id for t in turns], status=TurnStatus.FAILED))

    until(lambda: len(refused()) == TURNS - RPM, "the refused turns")
    assert server.held == RPM and sum(len(v) for v in server.asked.values()) == RPM
    assert session_locks(first) >= 2 and session_locks(second) >= 2
    for turn in refused():
        assert turn.outcome == "rate_limited", (turn.outcome, turn.detail)
        [event] = SessionEvent.objects.filter(turn=turn, type="turn.failed")
        assert event.payload["reason"] == "rate_limited"
        assert (event.payload["budget"]["scope"], event.payload["budget"]["kind"]) == (
            "tenant",
            "rpm",
        )
        assert event.payload["budget"]["retry_after"] > 0
    # The next message is refused at the door, with when to come back.
    late = post(TURNS)
    assert late.status_code == 429, late.json()
    assert late.json()["code"] == "rate_limited"
    assert 1 <= int(late["Retry-After"]) <= 60
    assert not Turn.objects.filter(session=sessions[TURNS]).exists()

    server.release()
    for turn in turns:
        wait_for_turn(turn)
    completed = [t for t in turns if t.status == TurnStatus.COMPLETED]
    assert len(completed) == RPM
    # Exactly RPM requests reached the model across both workers, each charged once.
    assert sum(len(v) for v in server.asked.values()) == RPM
    assert UsageRecord.objects.filter(tenant=world.tenant_a).count() == RPM
    assert (
        UsageRecord.objects.filter(tenant=world.tenant_a).aggregate(n=Sum("input_tokens"))["n"]
        == 10 * RPM
    )
    [window] = budget_ledger.windows_for(tenant_id=world.tenant_a.id, user_id=None)
    assert int(budget_ledger.ledger().client.hget(window.key, "used") or 0) == RPM
