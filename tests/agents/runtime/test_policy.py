"""The policy gate before every tool call: deny, fail closed, and park for human approval."""

from __future__ import annotations

from apps.agents.runtime.loop import run_turn
from apps.agents.runtime.memory import InMemoryCheckpointStore, ListEventSink, ScriptedModel
from apps.agents.runtime.ports import ApprovalDecision, GateDecision

from .builders import answer, calls, standard_tools


class Rules:
    """Denies or requires approval per tool name; records what it was asked."""

    def __init__(self, *, deny=(), approve=()):
        self.deny, self.approve = set(deny), set(approve)
        self.checked = []

    def decides_in_process(self, call):
        return False

    def check(self, call, *, ctx):
        self.checked.append((call.name, ctx.idempotency_key))
        if call.name in self.deny:
            return GateDecision.deny(f"{call.name} is not allowed in prod")
        if call.name in self.approve:
            return GateDecision.require_approval(f"{call.name} is a risky action")
        return GateDecision.allow()


class BrokenPolicyEngine:
    def decides_in_process(self, call):
        return False

    def check(self, call, *, ctx):
        raise ConnectionError("OPA unreachable")


def push_tools():
    return standard_tools().add(
        "push", lambda branch: f"pushed {branch}", input_schema={"type": "object"}
    )


def test_denied_call_is_not_executed_and_the_model_is_told():
    tools = push_tools()
    model = ScriptedModel([calls(("push", {"branch": "main"})), answer("I may not push.")])
    events = ListEventSink()
    outcome = run_turn(
        turn_id="t1",
        user_message="push it",
        model=model,
        tools=tools,
        policy=Rules(deny={"push"}),
        events=events,
    )
    assert outcome.status == "completed"
    assert tools.count("push") == 0
    assert model.requests[1].messages[-1].content == "denied by policy: push is not allowed in prod"
    denied = events.of_type("policy.denied")
    assert [(d["tool"], d["reason"]) for d in denied] == [("push", "push is not allowed in prod")]
    assert "tool.call" not in events.types()
    assert next(r for r in outcome.steps if r.node_id == "t1:0:0").status == "denied"


def test_policy_engine_error_fails_closed():
    tools = push_tools()
    model = ScriptedModel([calls(("push", {"branch": "main"})), answer("could not push")])
    outcome = run_turn(
        turn_id="t1", user_message="push", model=model, tools=tools, policy=BrokenPolicyEngine()
    )
    assert outcome.status == "completed"
    assert tools.count("push") == 0
    assert "OPA unreachable" in model.requests[1].messages[-1].content
    assert model.requests[1].messages[-1].content.startswith("denied by policy")


def test_only_the_gated_call_is_affected():
    tools = push_tools()
    model = ScriptedModel(
        [calls(("add", {"a": 1, "b": 2}), ("push", {"branch": "main"})), answer("ok")]
    )
    policy = Rules(deny={"push"})
    run_turn(turn_id="t1", user_message="x", model=model, tools=tools, policy=policy)
    assert tools.count("add") == 1
    assert tools.count("push") == 0
    assert policy.checked == [("add", "t1:0:0"), ("push", "t1:0:1")]


def park(tools, model, store, events=None):
    return run_turn(
        turn_id="t1",
        user_message="open the PR",
        model=model,
        tools=tools,
        policy=Rules(approve={"push"}),
        checkpoints=store,
        events=events,
    )


def test_risky_call_parks_the_turn_without_executing():
    tools, store, events = push_tools(), InMemoryCheckpointStore(), ListEventSink()
    model = ScriptedModel([calls(("add", {"a": 1, "b": 1}), ("push", {"branch": "main"}))])
    outcome = park(tools, model, store, events)

    assert outcome.status == "waiting_approval"
    assert outcome.pending is not None
    assert outcome.pending.call.name == "push"
    assert outcome.pending.call.arguments == {"branch": "main"}
    assert outcome.pending.call_key == "t1:0:1"
    assert outcome.pending.reason == "push is a risky action"
    assert tools.count("add") == 1
    assert tools.count("push") == 0
    assert events.types()[-1] == "turn.waiting"
    assert "turn.completed" not in events.types()
    assert "turn.failed" not in events.types()
    assert {r.node_id: r.status for r in store.load("t1")}["t1:0:1"] == "waiting_approval"


def test_approved_call_executes_exactly_once_and_the_turn_continues():
    tools, store = push_tools(), InMemoryCheckpointStore()
    model = ScriptedModel(
        [calls(("add", {"a": 1, "b": 1}), ("push", {"branch": "main"})), answer("PR opened")]
    )
    pending = park(tools, model, store).pending
    decision = ApprovalDecision(
        call_key=pending.call_key, approved=True, approver="alice", rationale="tests pass"
    )
    events = ListEventSink()
    outcome = run_turn(
        turn_id="t1",
        user_message="open the PR",
        model=model,
        tools=tools,
        policy=Rules(approve={"push"}),
        checkpoints=store,
        approval=decision,
        events=events,
    )
    assert outcome.status == "completed"
    assert outcome.final_answer == "PR opened"
    assert tools.count("push") == 1
    assert tools.count("add") == 1  # replayed, not re-run
    assert len(model.requests) == 2  # step 0 was replayed, not asked again
    assert model.requests[1].messages[-1].content == "pushed main"
    push = next(r for r in outcome.steps if r.node_id == "t1:0:1")
    assert push.status == "completed"
    assert push.inputs["approval"] == {
        "approved": True,
        "approver": "alice",
        "rationale": "tests pass",
    }
    assert events.of_type("turn.started")[0]["resumed"] is True

    # The same decision delivered twice (queues redeliver) changes nothing.
    again = run_turn(
        turn_id="t1",
        user_message="open the PR",
        model=model,
        tools=tools,
        policy=Rules(approve={"push"}),
        checkpoints=store,
        approval=decision,
    )
    assert again.status == "completed"
    assert tools.count("push") == 1
    assert len(model.requests) == 2


def test_rejected_call_is_never_executed_and_the_model_is_told_who_and_why():
    tools, store = push_tools(), InMemoryCheckpointStore()
    model = ScriptedModel([calls(("push", {"branch": "main"})), answer("Push was rejected.")])
    pending = park(tools, model, store).pending
    outcome = run_turn(
        turn_id="t1",
        user_message="open the PR",
        model=model,
        tools=tools,
        policy=Rules(approve={"push"}),
        checkpoints=store,
        approval=ApprovalDecision(
            pending.call_key, approved=False, approver="bob", rationale="not on Fridays"
        ),
    )
    assert outcome.status == "completed"
    assert tools.count("push") == 0
    assert model.requests[1].messages[-1].content == "rejected by bob: not on Fridays"
    assert next(r for r in outcome.steps if r.node_id == "t1:0:0").status == "rejected"


def test_a_decision_for_another_call_leaves_the_turn_waiting():
    tools, store = push_tools(), InMemoryCheckpointStore()
    model = ScriptedModel([calls(("push", {"branch": "main"}))])
    park(tools, model, store)
    outcome = run_turn(
        turn_id="t1",
        user_message="open the PR",
        model=model,
        tools=tools,
        policy=Rules(approve={"push"}),
        checkpoints=store,
        approval=ApprovalDecision("t1:7:0", approved=True, approver="alice"),
    )
    assert outcome.status == "waiting_approval"
    assert outcome.pending.call_key == "t1:0:0"
    assert tools.count("push") == 0
    assert len(model.requests) == 1
