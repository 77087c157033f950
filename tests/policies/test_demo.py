"""`make run`'s demo tenant: its policy sends the demo agent's word_count call to approval."""

from __future__ import annotations

import copy

import pytest

from apps.agents.demo import DEMO_POLICY_SOURCE, seed_demo_policies
from apps.policies import services
from apps.policies.defaults import SAMPLE_INPUT
from apps.policies.models import Policy
from tests.conftest import World

pytestmark = pytest.mark.django_db


def test_the_demo_policy_sends_word_count_to_approval(world: World) -> None:
    services.policy_source_check(source=DEMO_POLICY_SOURCE, entry_point="data.warden.decision")
    assert seed_demo_policies(tenant=world.tenant_a) is not None
    assert seed_demo_policies(tenant=world.tenant_a) is None  # idempotent
    assert Policy.objects.filter(tenant=world.tenant_a).count() == 2

    def outcome(agent: str, tool: str) -> str:
        doc = copy.deepcopy(SAMPLE_INPUT)
        doc["tool"].update(name=tool, source="wasm", risk_tier="low")
        return services.decision_make(
            tenant_id=world.tenant_a.id, agent_slug=agent, tool_name=tool, input_doc=doc
        ).outcome

    assert outcome("demo-scripted", "word_count") == "require_approval"
    assert outcome("demo-scripted", "get_current_time") == "allow"
    assert outcome("local-assistant", "word_count") == "allow"
