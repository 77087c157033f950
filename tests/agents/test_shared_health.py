"""A model endpoint found down by a worker process is skipped by every other process."""

from __future__ import annotations

import pytest
from django.conf import settings

from apps.agents import orchestrator, services
from apps.agents.models import TurnStatus
from apps.llm.services import router_for_tenant
from tests.agents.conftest import make_agent, make_session, wait_for_turn
from tests.conftest import WorkerProcess, World

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.worker
def test_an_endpoint_that_failed_in_the_worker_is_open_here_too(
    world: World, celery_worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = make_agent(world.tenant_a, [{"error": "unavailable"}], slug="down")
    # Turns of different sessions: the worker's pool processes share them out.
    for _ in range(settings.WARDEN_BREAKER_FAIL_MAX):
        turn = services.turn_enqueue(session=make_session(agent), message="hello")
        turn = wait_for_turn(turn, statuses=("completed", "failed"))
        assert (turn.status, turn.outcome) == (TurnStatus.FAILED, "provider_error")
        assert "unavailable" in turn.detail

    # This process never called the endpoint, and does not now: the worker's failures opened
    # the breaker here as well.
    router = router_for_tenant(tenant_id=world.tenant_a.id)
    assert router.breaker_state("scripted") == "open"
    monkeypatch.setattr("apps.agents.services.turn_dispatch", lambda **_: None)
    here = services.turn_enqueue(session=make_session(agent), message="hello")
    assert orchestrator.turn_execute(turn_id=here.id) == "failed"
    here.refresh_from_db()
    assert here.outcome == "provider_error"
    assert "open circuit breaker" in here.detail
