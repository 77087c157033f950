"""Admission control when a turn is posted: the message's size (with a hint), the prompt
against the model's context window (a larger model only when asked), a spent budget and a
full rate window (refused before anything is queued), and backpressure (degraded, then 503)."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from apps.agents import orchestrator
from apps.agents.models import ActionNode, Agent, SessionEvent, Turn
from apps.budgets.models import Budget, TenantBudgetSettings
from apps.budgets.services import ledger as budget_ledger
from apps.llm.models import ModelEndpoint
from apps.llm.services import endpoint_save
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_dispatch", "budget_prefix"),
]

ANSWER = [{"final": "ok"}]


def post(client: APIClient, agent: Agent, message: str = "hi", **extra: object) -> object:
    session = make_session(agent)
    return client.post(
        f"/api/v1/sessions/{session.id}/turns", {"message": message, **extra}, format="json"
    )


@override_settings(WARDEN_MAX_MESSAGE_CHARS=100)
def test_a_message_too_long_is_refused_with_how_to_split_it(
    world: World, alice_client: APIClient
) -> None:
    response = post(alice_client, make_agent(world.tenant_a, ANSWER), "x" * 250)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "message_too_long"
    assert body["details"] == {"length": 250, "limit": 100, "parts": 3}
    assert "Split it into 3 messages of at most 100 characters" in body["message"]
    assert not Turn.objects.exists()


def small_context_agent(world: World) -> Agent:
    agent = make_agent(world.tenant_a, ANSWER, system_prompt="Be brief. " * 200)
    ModelEndpoint.objects.filter(tenant=world.tenant_a, name="scripted").update(context_window=256)
    return agent


def test_a_prompt_too_long_for_the_model_is_refused_with_the_reason(
    world: World, alice_client: APIClient
) -> None:
    response = post(alice_client, small_context_agent(world))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "prompt_too_long"
    assert body["details"]["context_window"] == 256
    assert body["details"]["endpoint"] == "scripted"
    assert body["details"]["prompt_tokens"] > 256
    assert body["details"]["larger_model_available"] is False
    assert not Turn.objects.exists()


def test_a_larger_context_model_only_when_the_caller_allows_the_upgrade(
    world: World, alice_client: APIClient
) -> None:
    agent = small_context_agent(world)
    larger = endpoint_save(
        tenant=world.tenant_a,
        name="roomy",
        provider="scripted",
        model="scripted-roomy",
        tier="small",
        allowed_sensitivities=["public", "internal", "confidential"],
        options={"script": ANSWER},
        context_window=8192,
        priority=1000,  # tried after "scripted"
    )
    agent.allowed_endpoints.add(larger)

    refused = post(alice_client, agent)
    assert refused.status_code == 400
    assert refused.json()["details"]["larger_model_available"] is True
    assert "allow_model_upgrade" in refused.json()["message"]

    accepted = post(alice_client, agent, allow_model_upgrade=True)
    assert accepted.status_code == 202, accepted.json()
    turn = Turn.objects.get(id=accepted.json()["id"])
    assert turn.min_context_tokens > 256
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == "completed", turn.detail
    [called] = SessionEvent.objects.filter(turn=turn, type="model.called")
    assert called.payload["endpoint"] == "roomy"


def test_a_spent_budget_refuses_the_turn_before_it_is_queued(
    world: World, alice_client: APIClient
) -> None:
    agent = make_agent(world.tenant_a, ANSWER)
    budget = Budget.objects.create(
        tenant=world.tenant_a, scope="agent", agent_id=agent.id, period="month", max_tokens=10
    )
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
    # Another turn of the agent holds what is left of the cap.
    held = budget_ledger.reserve(
        reservation_id="elsewhere@1",
        caps=[cap],
        windows=[],
        tokens=10,
        micros=0,
        deadline_s=2e9,
        meta={},
    )
    assert held.kind == "ok"

    refused = post(alice_client, agent)
    assert refused.status_code == 409
    body = refused.json()
    assert body["code"] == "budget_exceeded"
    assert body["details"]["scope"] == "agent"
    assert body["details"]["budget_id"] == str(budget.id)
    assert body["details"]["resets_at"].endswith("T00:00:00Z")
    assert not Turn.objects.exists()
    # Another agent of the tenant is not touched.
    other = make_agent(world.tenant_a, ANSWER, slug="other")
    assert post(alice_client, other).status_code == 202


def test_a_full_rate_window_is_a_429_with_retry_after(
    world: World, alice_client: APIClient
) -> None:
    TenantBudgetSettings.objects.create(tenant=world.tenant_a, rpm_per_tenant=1)
    agent = make_agent(world.tenant_a, ANSWER)
    first = post(alice_client, agent)
    assert first.status_code == 202
    orchestrator.turn_execute(turn_id=first.json()["id"])  # its one call fills the window
    assert Turn.objects.get(id=first.json()["id"]).status == "completed"

    refused = post(alice_client, agent)
    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == "rate_limited"
    assert body["details"]["scope"] == "tenant" and body["details"]["kind"] == "rpm"
    assert 1 <= int(refused["Retry-After"]) <= 60


@override_settings(
    WARDEN_BACKPRESSURE_DEGRADE_DEPTH=2,
    WARDEN_BACKPRESSURE_REFUSE_DEPTH=4,
    WARDEN_BACKPRESSURE_RETRY_AFTER_SECONDS=7,
)
def test_backpressure_degrades_then_refuses_and_says_so(
    world: World, alice_client: APIClient
) -> None:
    agent = make_agent(world.tenant_a, ANSWER)
    # Queued turns behind their own session's turn wait for order, not for a worker.
    session = make_session(agent)
    for _ in range(5):
        ok = alice_client.post(
            f"/api/v1/sessions/{session.id}/turns", {"message": "hi"}, format="json"
        )
        assert ok.status_code == 202
    assert [t.degraded for t in Turn.objects.order_by("created_at")] == [[]] * 5

    assert post(alice_client, agent).status_code == 202  # 1 head of queue before it: ok
    assert Turn.objects.order_by("-created_at")[0].degraded == []
    first = post(alice_client, agent)  # 2 heads before it: degraded
    assert first.status_code == 202
    degraded = Turn.objects.get(id=first.json()["id"])
    assert degraded.degraded == ["small_tier", "trim_tools"]
    accepted = SessionEvent.objects.get(turn=degraded, type="turn.accepted")
    assert accepted.payload["degraded"] == ["small_tier", "trim_tools"]
    assert post(alice_client, agent).status_code == 202  # 3 heads: degraded; 4: refusing

    refused = post(alice_client, agent)
    assert refused.status_code == 503
    assert refused.json()["code"] == "backpressure"
    assert refused["Retry-After"] == "7"

    ready = Client().get("/readyz")
    assert ready.status_code == 200  # backpressure never fails readiness
    detail = ready.json()["detail"]["backpressure"]
    assert detail["state"] == "refusing" and detail["queued_turns"] == 4
    metrics = Client().get("/metrics").content.decode()
    assert 'warden_backpressure_state{state="refusing"} 1.0' in metrics
    assert "warden_turns_queued 4.0" in metrics

    # A degraded turn runs under its obligations from the first call.
    orchestrator.turn_execute(turn_id=degraded.id)
    degraded.refresh_from_db()
    assert degraded.status == "completed"
    node = ActionNode.objects.get(turn=degraded, kind="model_call")
    assert node.inputs["obligations"] == ["small_tier", "trim_tools"]


def test_admission_reads_endpoints_through_a_router_kept_per_tenant_for_the_config_ttl(
    world: World,
    alice_client: APIClient,
    charlie_client: APIClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Within WARDEN_BUDGET_CONFIG_CACHE_SECONDS a POST reads no endpoint rows; an endpoint
    edit reaches admission once it has passed; each tenant gets its own endpoints."""
    from django.db import connection

    from apps.agents import admission

    clock = [1000.0]
    monkeypatch.setattr(admission.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(admission, "_routers", {})
    reads: list[str] = []

    def count(execute: object, sql: str, params: object, many: bool, context: object) -> object:
        if "llm_modelendpoint" in sql and "allowed_endpoints" not in sql:  # the router's read
            reads.append(sql)
        return execute(sql, params, many, context)  # type: ignore[operator]

    agent = small_context_agent(world)
    with override_settings(WARDEN_BUDGET_CONFIG_CACHE_SECONDS=5), connection.execute_wrapper(count):
        assert post(alice_client, agent).status_code == 400  # prompt_too_long
        assert len(reads) == 1
        endpoint_save(  # as the console and the API save it (updated_at moves)
            tenant=world.tenant_a,
            endpoint=ModelEndpoint.objects.get(tenant=world.tenant_a, name="scripted"),
            context_window=100_000,
        )
        reads.clear()
        response = post(alice_client, agent)
        # Still the router admission read 5 s ago: the same refusal, no endpoint read.
        assert response.status_code == 400 and response.json()["code"] == "prompt_too_long"
        assert reads == []
        # Another tenant is not answered from tenant A's router.
        other = make_agent(world.tenant_b, ANSWER)
        assert post(charlie_client, other).status_code == 202
        clock[0] += 6
        assert post(alice_client, agent).status_code == 202  # the edit has arrived
