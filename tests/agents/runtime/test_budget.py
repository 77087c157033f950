"""Token budgets: reserve an estimate before every model call, settle the real usage after."""

from __future__ import annotations

from apps.agents.runtime.loop import LoopConfig, estimate_tokens, run_turn
from apps.agents.runtime.memory import DictTools, FixedBudget, ListEventSink, ScriptedModel
from apps.agents.runtime.ports import BudgetExceeded, Reservation
from apps.llm.types import Message, ModelRequest, Usage

from .builders import USAGE, answer, calls, standard_tools


class RecordingBudget:
    def __init__(self):
        self.estimates = []

    def reserve(self, *, estimated_tokens, ctx, request=None):
        self.estimates.append((estimated_tokens, ctx.idempotency_key))
        return Reservation(id=ctx.idempotency_key, tokens=estimated_tokens)

    def settle(self, reservation, *, usage, endpoint=""):
        pass


def test_estimate_is_input_chars_over_four_plus_the_output_allowance():
    budget = RecordingBudget()
    run_turn(
        turn_id="t1",
        user_message="y" * 400,
        system_prompt="x" * 400,
        model=ScriptedModel([answer("ok")]),
        tools=DictTools(),
        budget=budget,
        config=LoopConfig(max_output_tokens=1000),
    )
    assert budget.estimates == [(200 + 1000, "t1:0:model:0")]


def test_refused_reservation_ends_the_turn_before_the_model_is_called():
    tools = standard_tools()
    model = ScriptedModel([calls(("add", {"a": 1, "b": 2})), answer("3")])
    first_request = ModelRequest(
        messages=(Message(role="user", content="1+2?"),),
        tools=tuple(tools.list_specs()),
        max_output_tokens=1000,
    )
    # Room for the first call's estimate, not for a second one on top of its usage.
    limit = estimate_tokens(first_request) + 10
    budget = FixedBudget(limit=limit)
    events = ListEventSink()
    outcome = run_turn(
        turn_id="t1",
        user_message="1+2?",
        model=model,
        tools=tools,
        budget=budget,
        events=events,
        config=LoopConfig(max_output_tokens=1000),
    )
    assert outcome.status == "budget_exceeded"
    assert outcome.reason == "budget_exceeded"
    assert f"left of {limit}" in outcome.detail
    assert len(model.requests) == 1
    assert tools.count("add") == 1
    # The first call was settled with its real usage, and nothing stays reserved.
    assert [usage for _, usage in budget.settled] == [USAGE]
    assert budget.spent == 15
    assert budget.reserved == {}
    assert events.of_type("turn.failed")[0]["status"] == "budget_exceeded"
    assert outcome.usage == Usage(input_tokens=10, output_tokens=5)


def test_budget_port_raising_is_the_only_refusal():
    class NoBudget:
        def reserve(self, *, estimated_tokens, ctx, request=None):
            raise BudgetExceeded("session budget of 40000 tokens used up")

        def settle(self, reservation, *, usage, endpoint=""):
            raise AssertionError("nothing was reserved")

    model = ScriptedModel([answer("never")])
    outcome = run_turn(
        turn_id="t1", user_message="x", model=model, tools=DictTools(), budget=NoBudget()
    )
    assert outcome.status == "budget_exceeded"
    assert outcome.detail == "session budget of 40000 tokens used up"
    assert model.requests == []


def test_a_model_that_reports_no_usage_is_still_charged() -> None:
    from apps.agents.runtime.loop import run_turn
    from apps.agents.runtime.memory import DictTools, FixedBudget, ScriptedModel
    from apps.llm.types import ModelResponse

    budget = FixedBudget(10_000)
    model = ScriptedModel([ModelResponse(text="Here is a long enough final answer.")])
    outcome = run_turn(
        turn_id="t", user_message="hello there", model=model, tools=DictTools(), budget=budget
    )
    assert outcome.status == "completed"
    assert outcome.usage.input_tokens > 0 and outcome.usage.output_tokens > 0
    assert budget.spent == outcome.usage.input_tokens + outcome.usage.output_tokens
