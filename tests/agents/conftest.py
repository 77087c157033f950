"""Agents fixtures: a scripted endpoint and agent per test, and helpers to run turns."""

from __future__ import annotations

import time
from typing import Any

import pytest

from apps.agents import services
from apps.agents.models import Agent, AgentSession, Turn
from apps.llm.models import ModelEndpoint
from apps.llm.services import endpoint_save
from apps.tenants.models import Tenant
from tests.conftest import World


def make_agent(
    tenant: Tenant,
    script: list[dict[str, Any]] | None,
    *,
    tools: list[str] | None = None,
    slug: str = "scripted",
    max_steps: int = 6,
    endpoint_name: str = "scripted",
    **agent_fields: Any,
) -> Agent:
    endpoint = ModelEndpoint.objects.filter(tenant=tenant, name=endpoint_name).first()
    if endpoint is None:
        endpoint = endpoint_save(
            tenant=tenant,
            name=endpoint_name,
            provider="scripted",
            model="scripted",
            tier="small",
            allowed_sensitivities=["public", "internal", "confidential"],
            options={"script": script} if script is not None else {},
        )
    return services.agent_save(
        tenant=tenant,
        name=f"Agent {slug}",
        slug=slug,
        allowed_tools=tools or [],
        max_steps=max_steps,
        allowed_endpoints=[endpoint],
        **agent_fields,
    )


def make_session(agent: Agent, user: Any = None) -> AgentSession:
    return services.session_create(tenant=agent.tenant, agent=agent, user=user)


def wait_for_turn(
    turn: Turn,
    *,
    timeout: float = 60.0,
    statuses: tuple[str, ...] = (
        "completed",
        "failed",
        "cancelled",
        "waiting",
    ),
) -> Turn:
    """Poll the database until the worker has moved the turn to one of `statuses`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        turn.refresh_from_db()
        if turn.status in statuses:
            return turn
        time.sleep(0.1)
    raise AssertionError(f"turn {turn.id} still {turn.status} after {timeout}s")


@pytest.fixture
def two_tool_agent(world: World) -> Agent:
    script = [
        {"tool": "clock_now", "arguments": {"timezone": "UTC"}, "say": "Checking the time."},
        {"tool": "calculator", "arguments": {"expression": "6 * 7"}, "say": "Calculating."},
        {"final": "Time: ${tool_result_1}. Answer: ${tool_result_2}."},
    ]
    return make_agent(world.tenant_a, script, tools=["clock_now", "calculator"])


@pytest.fixture
def no_dispatch(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Keep turns away from any running worker: the test drives them in-process."""
    dispatched: list[str] = []

    def record(*, turn_id: Any, session_id: Any = None, tenant_id: Any = None) -> None:
        dispatched.append(str(turn_id))

    monkeypatch.setattr("apps.agents.services.turn_dispatch", record)
    monkeypatch.setattr("apps.agents.orchestrator.turn_dispatch", record)
    return dispatched


@pytest.fixture
def jobs_dispatched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Keep tool jobs away from any running worker: the test runs them in-process."""
    dispatched: list[str] = []

    def record(*, job_id: Any) -> None:
        dispatched.append(str(job_id))

    monkeypatch.setattr("apps.agents.jobs.tool_job_dispatch", record)
    return dispatched


@pytest.fixture
def budget_prefix(redis_client: Any) -> Any:
    """Budget counters and holds under a key prefix of this test's own, gone afterwards."""
    import uuid

    from django.conf import settings
    from django.test import override_settings

    own = f"{settings.WARDEN_BUDGET_REDIS_PREFIX}:{uuid.uuid4().hex[:12]}"
    with override_settings(WARDEN_BUDGET_REDIS_PREFIX=own, WARDEN_BUDGET_CONFIG_CACHE_SECONDS=0):
        yield own
    keys = list(redis_client.scan_iter(f"{own}:*"))
    if keys:
        redis_client.delete(*keys)
