"""Each /metrics figure moves when its thing happens: scraped over HTTP, as Prometheus would."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from apps.agents import orchestrator, services
from apps.agents.models import Agent
from apps.llm.services import endpoint_save
from tests.agents.conftest import make_agent, make_session
from tests.approvals.conftest import ParkTurn, SentTasks
from tests.conftest import World

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape() -> Samples:
    response = APIClient().get("/metrics")  # from loopback: allowed in tests
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_turn_moves_outcomes_step_latencies_tokens_and_cost(world: World) -> None:
    endpoint_save(
        tenant=world.tenant_a,
        name="priced",
        provider="scripted",
        model="scripted-priced",
        tier="small",
        allowed_sensitivities=["public", "internal", "confidential"],
        price_input_per_mtok=Decimal("1000"),
        price_output_per_mtok=Decimal("2000"),
        options={
            "script": [
                {"tool": "calculator", "arguments": {"expression": "6 * 7"}},
                {"final": "42"},
            ]
        },
    )
    agent = make_agent(
        world.tenant_a, None, tools=["calculator"], slug="metered", endpoint_name="priced"
    )
    before = scrape()
    turn = services.turn_enqueue(session=make_session(agent), message="6*7?")
    assert orchestrator.turn_execute(turn_id=turn.id) == "completed"
    after = scrape()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("warden_turns_total", outcome="completed") == 1
    histogram = "warden_step_duration_seconds_count"
    assert moved(histogram, kind="prompt_build") == 1
    assert moved(histogram, kind="model_call") == 2
    assert moved(histogram, kind="policy_check") == 1
    assert moved(histogram, kind="tool_call") == 1
    assert moved("warden_step_duration_seconds_sum", kind="model_call") > 0
    # Every observation lands in the +Inf bucket, and the buckets are cumulative.
    assert moved("warden_step_duration_seconds_bucket", kind="model_call", le="+Inf") == 2
    assert value(after, "warden_step_duration_seconds_bucket", kind="model_call", le="0.001") <= (
        value(after, "warden_step_duration_seconds_bucket", kind="model_call", le="+Inf")
    )

    turn.refresh_from_db()
    tenant = str(world.tenant_a.id)
    labels = {"tenant": tenant, "model": "scripted-priced"}
    assert moved("warden_model_tokens_total", direction="input", **labels) == turn.input_tokens
    assert moved("warden_model_tokens_total", direction="output", **labels) == turn.output_tokens
    expected = (turn.input_tokens * 1000 + turn.output_tokens * 2000) / 1_000_000
    assert moved("warden_model_cost_total", **labels) == pytest.approx(expected, rel=1e-6)


def test_a_failed_turn_counts_under_its_reason(world: World) -> None:
    agent = make_agent(world.tenant_a, [{"error": "timeout"}], slug="flaky")
    before = scrape()
    turn = services.turn_enqueue(session=make_session(agent), message="hi")
    orchestrator.turn_execute(turn_id=turn.id)
    after = scrape()
    key = ("warden_turns_total", (("outcome", "provider_error"),))
    assert after.get(key, 0) - before.get(key, 0) == 1


def test_a_denied_call_counts_as_a_policy_denial(world: World, tmp_path: Path) -> None:
    from tests.policies.test_gate import DENY, add_policy

    add_policy(world.tenant_a, "no-append", DENY, tool_name="append_line")
    script = [
        {"tool": "append_line", "arguments": {"path": str(tmp_path / "x"), "text": "t"}},
        {"final": "ok"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["append_line"], slug="denied")
    labels = {"tenant": str(world.tenant_a.id), "tool": "append_line"}
    before = value(scrape(), "warden_policy_denials_total", **labels)
    orchestrator.turn_execute(
        turn_id=services.turn_enqueue(session=make_session(agent), message="w").id
    )
    assert value(scrape(), "warden_policy_denials_total", **labels) - before == 1


def test_pending_approvals_rise_when_a_call_parks_and_fall_when_decided(
    world: World, park_turn: ParkTurn, sent: SentTasks, dave_client: APIClient
) -> None:
    before = value(scrape(), "warden_approvals_pending")
    parked = park_turn()
    during = scrape()
    assert value(during, "warden_approvals_pending") == before + 1
    assert value(during, "warden_approval_oldest_pending_age_seconds") >= 0
    assert value(during, "warden_turns_total", outcome="waiting_approval") >= 1
    response = dave_client.post(
        f"/api/v1/approvals/{parked.approval.id}/approve", {"rationale": "ok"}, format="json"
    )
    assert response.status_code == 200
    assert value(scrape(), "warden_approvals_pending") == before


def test_queue_depth_is_reported(world: World, two_tool_agent: Agent) -> None:
    before = value(scrape(), "warden_turns_queued")
    services.turn_enqueue(session=make_session(two_tool_agent), message="wait for me")
    assert value(scrape(), "warden_turns_queued") == before + 1


@override_settings(WARDEN_METRICS_TOKEN="scrape-secret")
def test_the_new_figures_stay_behind_the_metrics_token(world: World) -> None:
    refused = APIClient().get("/metrics")
    assert refused.status_code == 401 and refused.json()["code"] == "metrics_token_required"
    assert b"warden_turns_total" not in refused.content
    wrong = APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401
    ok = APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert ok.status_code == 200 and b"warden_approvals_pending" in ok.content
