"""The demo tenant's agents and model endpoints, seeded by `manage.py seed_demo`.

The small local model can't be relied on to pick tools, so the walk-through
agent runs on the scripted model and says so in its name: it shows tool calls,
streaming and the action graph on every run, deterministically.
"""

from __future__ import annotations

from typing import Any

from apps.agents.models import Agent
from apps.agents.services import agent_save
from apps.llm.models import ModelEndpoint
from apps.llm.services import endpoint_save
from apps.tenants.models import Tenant

DEMO_SCRIPT: list[dict[str, Any]] = [
    {"tool": "clock_now", "arguments": {"timezone": "UTC"}, "say": "First I'll check the time."},
    {"tool": "calculator", "arguments": {"expression": "6 * 7"}, "say": "Now a quick calculation."},
    {
        "final": "(scripted demo) The clock says ${tool_result_1}; the calculator says "
        "${tool_result_2}. You said: ${last_user_message}"
    },
]


def _endpoint(tenant: Tenant, name: str, **fields: Any) -> ModelEndpoint:
    existing = ModelEndpoint.objects.filter(tenant=tenant, name=name).first()
    if existing:
        return existing
    return endpoint_save(tenant=tenant, name=name, **fields)


def seed_demo_agents(*, tenant: Tenant) -> list[Agent]:
    scripted = _endpoint(
        tenant,
        "scripted-demo",
        provider="scripted",
        model="scripted-demo",
        tier="small",
        supports_tools=True,
        allowed_sensitivities=["public", "internal", "confidential"],
        priority=100,
        options={"script": DEMO_SCRIPT},
    )
    agents = []
    if not Agent.objects.filter(tenant=tenant, slug="demo-scripted").exists():
        agents.append(
            agent_save(
                tenant=tenant,
                name="Demo agent (scripted model)",
                slug="demo-scripted",
                description="Walks through tool calls deterministically on the scripted model.",
                system_prompt="You are Warden's demo agent. Use tools when they help.",
                model_tier="small",
                allowed_tools=["clock_now", "calculator"],
                max_steps=6,
                allowed_endpoints=[scripted],
            )
        )
    return agents
