"""A burst of 200 turns against a money budget that fits about ten of them, run by two worker
processes: committed spend never exceeds the budget, every turn that did not run says why,
and nothing stays held."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections
from django.db.models import Sum

from apps.agents import services
from apps.agents.models import SessionEvent, Turn, TurnStatus
from apps.budgets.ledger.types import from_micros, to_micros
from apps.budgets.models import Budget, UsageRecord
from apps.budgets.services import ledger as budget_ledger
from apps.llm.services import endpoint_save
from tests.agents.conftest import make_session, wait_for_turn
from tests.agents.step_server import StepModelServer
from tests.agents.test_concurrency import _pooled_connections
from tests.conftest import WorkerProcess, World, _test_env, client_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# A call holds its prompt's bound (a few dozen tokens) plus 1024 output tokens; at 1000 per
# million each way, a hold is a little over 1.024.
PRICE = Decimal("1000")
ONE_HOLD_FLOOR = Decimal(1024) * PRICE / 1_000_000


@pytest.fixture
def second_worker(celery_worker: WorkerProcess) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(_test_env())
    worker.start()
    yield worker
    worker.stop()


def until(predicate: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the burst did not settle in time"
        time.sleep(0.1)


def test_200_turns_against_a_budget_for_about_10_never_overspend_and_say_why(
    world: World, celery_worker: WorkerProcess, second_worker: WorkerProcess
) -> None:
    server = StepModelServer([], final="ok", hold_step=0)
    try:
        endpoint = endpoint_save(
            tenant=world.tenant_a,
            name="priced-step",
            provider="openai",
            model="step-model",
            base_url=server.url,
            tier="small",
            price_input_per_mtok=PRICE,
            price_output_per_mtok=PRICE,
        )
        agent = services.agent_save(
            tenant=world.tenant_a,
            name="Burst",
            slug="burst",
            allowed_endpoints=[endpoint],
        )
        budget = Budget.objects.create(
            tenant=world.tenant_a,
            scope="tenant",
            period="day",
            max_cost=(ONE_HOLD_FLOOR * Decimal("10.5")).quantize(Decimal("0.0001")),
        )
        sessions = [make_session(agent) for _ in range(200)]
        client = client_for(world.tenant_a, scopes=["write"])

        def post(i: int) -> tuple[int, dict[str, Any]]:
            try:
                response = client.post(
                    f"/api/v1/sessions/{sessions[i].id}/turns", {"message": "go"}, format="json"
                )
                return response.status_code, response.json()
            finally:
                connections.close_all()

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(post, range(200)))

        # Settled while held: nothing queued, every running turn waits at the model.
        def steady() -> bool:
            queued = Turn.objects.filter(session__in=sessions, status=TurnStatus.QUEUED)
            running = Turn.objects.filter(session__in=sessions, status=TurnStatus.RUNNING)
            return server.held > 0 and not queued.exists() and running.count() == server.held

        until(steady)
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
        state = budget_ledger.ledger().states([cap.counter])[cap.counter.key]
        assert state is not None
        held = server.held
        assert state.reserved_micros <= to_micros(budget.max_cost)
        assert held * ONE_HOLD_FLOOR <= budget.max_cost
        assert 5 <= held <= 10
        # Both worker processes run turns of the burst.
        assert _pooled_connections(celery_worker.pid) > 0
        assert _pooled_connections(second_worker.pid) > 0
        server.release()

        accepted = [body["id"] for status, body in answers if status == 202]
        refused = [body for status, body in answers if status != 202]
        for body in refused:  # refused at the door: the tenant's budget, named
            assert body["code"] == "budget_exceeded", body
            assert body["details"]["scope"] == "tenant"
            assert body["details"]["budget_id"] == str(budget.id)
        completed = failed = 0
        for turn_id in accepted:
            turn = wait_for_turn(Turn.objects.get(id=turn_id))
            if turn.status == TurnStatus.COMPLETED:
                completed += 1
                continue
            assert (turn.status, turn.outcome) == (TurnStatus.FAILED, "budget_exceeded"), (
                turn.outcome,
                turn.detail,
            )
            [event] = SessionEvent.objects.filter(turn=turn, type="turn.failed")
            assert event.payload["budget"]["scope"] == "tenant"
            failed += 1
        assert completed >= 1 and failed + len(refused) >= 1
        assert completed + failed + len(refused) == 200

        spent = UsageRecord.objects.filter(tenant=world.tenant_a).aggregate(c=Sum("cost"))["c"]
        assert UsageRecord.objects.filter(tenant=world.tenant_a).count() == completed
        assert spent is not None and spent <= budget.max_cost
        # Nothing stays held: the counter's holds are back to zero and no hold of the
        # tenant's turns is open.
        state = budget_ledger.ledger().states([cap.counter])[cap.counter.key]
        assert state is not None
        assert (state.reserved_tokens, state.reserved_micros) == (0, 0)
        assert from_micros(state.spent_micros) >= spent
        led = budget_ledger.ledger()
        open_ids = [
            rid.decode() if isinstance(rid, bytes) else str(rid)
            for rid in led.client.zrange(led.open_key, 0, -1)
        ]
        assert not [rid for rid in open_ids if rid.split(":", 1)[0] in set(accepted)]
    finally:
        server.stop()
