"""A test-only policy gate: every call of the tools in GATED_TOOLS needs a human's approval;
other calls go to the real gate (`orchestrator.policy_gate_for`, whatever it is).

It must hold in the test worker too, where turns run: config/settings/test.py lists this
module in CELERY_IMPORTS, so the worker imports it (and installs the gate) when it starts.
The test process imports it from tests/approvals/conftest.py.
"""

from __future__ import annotations

from typing import Any

from apps.agents import orchestrator
from apps.agents.models import Turn
from apps.agents.runtime.ports import GateDecision, PolicyGate, StepContext
from apps.llm.types import ToolCall

GATED_TOOLS = frozenset({"guarded_append"})
REASON = "guarded_append changes files: a human approves each call"


class ApprovalForGatedTools:
    def __init__(self, inner: PolicyGate) -> None:
        self.inner = inner

    def check(self, call: ToolCall, *, ctx: StepContext) -> GateDecision:
        if call.name in GATED_TOOLS:
            return GateDecision.require_approval(REASON)
        return self.inner.check(call, ctx=ctx)


def install() -> None:
    current: Any = orchestrator.policy_gate_for
    if getattr(current, "gates_for_tests", False):
        return

    def policy_gate_for(turn: Turn, **parts: Any) -> PolicyGate:
        return ApprovalForGatedTools(current(turn, **parts))

    policy_gate_for.gates_for_tests = True  # type: ignore[attr-defined]
    orchestrator.policy_gate_for = policy_gate_for


install()
