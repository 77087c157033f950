"""The decision before every tool call, through real turns (the scripted model, in-process):
enforce, report-only, deny, approval, fail closed (engine error, timeout, a crash), the
default policy, scope, and what is recorded (a `policy` node per call, a policy.decision
event, versions, the input with argument values redacted)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from apps.agents import orchestrator, services
from apps.agents.models import ActionNode, AgentSession, SessionEvent, Turn, TurnStatus
from apps.policies import services as policy_services
from apps.policies.models import Policy, PolicyMode
from apps.tenants.models import Tenant
from apps.tools import services as tool_services
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]

SECRET = "hunter2-do-not-log"


def rego(allow: str = "true", approval: str = "false", reason: str = "policy says so") -> str:
    return (
        "package warden\nimport rego.v1\n\n"
        f'decision := {{"allow": {allow}, "require_approval": {approval}, '
        f'"reasons": ["{reason}"], "obligations": []}}\n'
    )


DENY = rego(allow="false", reason="appending is forbidden")
APPROVAL = rego(approval="true", reason="a human must agree")


def add_policy(tenant: Tenant, name: str, source: str, **fields: Any) -> Policy:
    return policy_services.policy_create(tenant=tenant, name=name, source=source, **fields)


def run(tenant: Tenant, path: Path, *, slug: str = "writer", **session_fields: Any) -> Turn:
    """A turn whose model calls append_line once (it leaves a line per run), then answers."""
    script = [
        {"tool": "append_line", "arguments": {"path": str(path), "text": SECRET}},
        {"final": "done: ${last_tool_result}"},
    ]
    agent = make_agent(
        tenant, script, tools=["append_line"], slug=slug, endpoint_name=f"scripted-{slug}"
    )
    session = services.session_create(tenant=tenant, agent=agent, user=None, **session_fields)
    turn = services.turn_enqueue(session=session, message="write it")
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    return turn


def runs(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def nodes(turn: Turn) -> dict[str, ActionNode]:
    return {n.kind: n for n in ActionNode.objects.filter(turn=turn).order_by("position")}


def decision_events(turn: Turn) -> list[dict[str, Any]]:
    return [
        e.payload
        for e in SessionEvent.objects.filter(turn=turn, type="policy.decision").order_by("id")
    ]


def test_every_call_gets_a_recorded_decision_with_the_exact_input_keys(
    world: World, tmp_path: Path
) -> None:
    path = tmp_path / "out.txt"
    turn = run(world.tenant_a, path)
    assert turn.status == TurnStatus.COMPLETED and runs(path) == 1  # low risk: allowed

    graph = list(ActionNode.objects.filter(turn=turn).order_by("position"))
    kinds = [n.kind for n in graph]
    assert kinds.index("policy") < kinds.index("tool_call")  # decided before it ran
    policy_node = graph[kinds.index("policy")]
    tool_node = graph[kinds.index("tool_call")]
    assert policy_node.node_id == f"{tool_node.node_id}:policy"
    assert policy_node.status == "allow"

    (evaluation,) = policy_node.outputs["policies"]
    default = Policy.objects.get(tenant=world.tenant_a, name="default")
    assert evaluation["name"] == "default" and evaluation["mode"] == "enforce"
    assert evaluation["version"] == 1
    assert evaluation["version_id"] == str(default.current_version_id)
    assert evaluation["engine"] == "rego" and evaluation["error"] is None
    assert policy_node.outputs["outcome"] == "allow"
    assert policy_node.outputs["would_be"]["outcome"] == "allow"
    assert policy_node.outputs["latency_us"] > 0

    recorded = policy_node.inputs["input"]
    assert set(recorded) == {
        "tenant", "user", "environment", "agent", "session", "tool", "arguments", "budget",
        "time", "arguments_digest",
    }  # fmt: skip
    assert recorded["tenant"] == {"id": str(world.tenant_a.id), "slug": "acme"}
    assert recorded["user"] == {"id": None, "roles": []}
    assert recorded["environment"] == "dev"
    assert (
        set(recorded["agent"]) == {"id", "slug", "tier"} and recorded["agent"]["slug"] == "writer"
    )
    assert set(recorded["session"]) == {"id", "risk_tier", "data_sensitivity"}
    assert recorded["tool"] == {
        "name": "append_line",
        "source": "builtin",
        "risk_tier": "low",
        "sensitivity": "internal",
    }
    assert set(recorded["budget"]) == {
        "tokens_used", "tokens_limit", "fraction_used", "state", "fraction_used_max",
        "obligations", "scopes",
    }  # fmt: skip
    assert recorded["budget"]["tokens_limit"] == 40000
    assert recorded["budget"]["state"] == "ok" and recorded["budget"]["obligations"] == []
    # Every cap the turn spends against: here the agent's own, per turn and per session.
    assert [(s["scope"], s["label"], s["tokens_limit"]) for s in recorded["budget"]["scopes"]] == [
        ("turn", "agent per turn", 10000),
        ("session", "agent per session", 40000),
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", recorded["time"])
    # Argument values never reach the decision's record or its event; names and a digest do.
    assert set(recorded["arguments"]) == {"path", "text"}
    assert SECRET not in json.dumps(policy_node.inputs) + json.dumps(policy_node.outputs)
    assert recorded["arguments_digest"].startswith("sha256:")

    (event,) = decision_events(turn)
    assert event["outcome"] == "allow" and event["node_id"] == policy_node.node_id
    assert event["policies"] == [
        {"name": "default", "version": 1, "mode": "enforce", "outcome": "allow"}
    ]
    assert SECRET not in json.dumps(event)


def test_the_user_and_their_roles_are_in_the_input(world: World, tmp_path: Path) -> None:
    script = [
        {"tool": "append_line", "arguments": {"path": str(tmp_path / "x"), "text": "x"}},
        {"final": "ok"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["append_line"], slug="mine")
    session = make_session(agent, world.alice)
    AgentSession.objects.filter(id=session.id).update(tokens_used=1234)
    turn = services.turn_enqueue(session=session, message="go")
    orchestrator.turn_execute(turn_id=turn.id)
    recorded = nodes(turn)["policy"].inputs["input"]
    assert recorded["user"] == {"id": world.alice.id, "roles": ["owner"]}
    assert recorded["budget"]["tokens_used"] >= 1234


def test_an_enforced_deny_never_runs_the_tool(world: World, tmp_path: Path) -> None:
    add_policy(world.tenant_a, "no-append", DENY, tool_name="append_line")
    path = tmp_path / "out.txt"
    turn = run(world.tenant_a, path)
    assert runs(path) == 0
    graph = nodes(turn)
    assert graph["tool_call"].status == "denied"
    assert "appending is forbidden" in graph["tool_call"].outputs["observation"]
    assert graph["policy"].status == "deny"
    assert graph["policy"].outputs["reasons"] == ["appending is forbidden"]
    # The model was told, and the turn went on to its answer.
    assert turn.status == TurnStatus.COMPLETED
    assert "denied by policy: appending is forbidden" in turn.final_answer


def test_report_only_lets_the_call_run_and_records_what_it_would_have_done(
    world: World, tmp_path: Path
) -> None:
    add_policy(world.tenant_a, "would-deny", DENY, mode=PolicyMode.REPORT_ONLY)
    path = tmp_path / "out.txt"
    turn = run(world.tenant_a, path)
    assert runs(path) == 1
    graph = nodes(turn)
    assert graph["tool_call"].status == "completed"
    assert graph["policy"].status == "allow"
    outputs = graph["policy"].outputs
    assert outputs["would_be"] == {
        "outcome": "deny",
        "reasons": ["appending is forbidden"],
        "obligations": [],
    }
    assert outputs["report_only_differs"] is True
    modes = {p["name"]: (p["mode"], p["outcome"]) for p in outputs["policies"]}
    assert modes == {"default": ("enforce", "allow"), "would-deny": ("report_only", "deny")}
    (event,) = decision_events(turn)
    assert event["outcome"] == "allow" and event["would_be"] == "deny"


def test_approval_wins_over_allow_and_parks_the_turn(world: World, tmp_path: Path) -> None:
    add_policy(world.tenant_a, "ask-first", APPROVAL, agent_slug="writer")
    path = tmp_path / "out.txt"
    turn = run(world.tenant_a, path)
    assert turn.status == TurnStatus.WAITING
    assert runs(path) == 0
    graph = nodes(turn)
    assert graph["policy"].status == "require_approval"
    assert graph["tool_call"].status == "waiting_approval"
    assert graph["tool_call"].outputs["reason"] == "a human must agree"
    assert SessionEvent.objects.filter(turn=turn, type="turn.waiting").exists()


def test_deny_wins_over_approval(world: World, tmp_path: Path) -> None:
    add_policy(world.tenant_a, "ask-first", APPROVAL)
    add_policy(world.tenant_a, "no-append", DENY)
    path = tmp_path / "out.txt"
    turn = run(world.tenant_a, path)
    assert nodes(turn)["policy"].status == "deny" and runs(path) == 0


def test_scope_picks_the_agent_and_the_tool(world: World, tmp_path: Path) -> None:
    add_policy(world.tenant_a, "other-agent", DENY, agent_slug="someone-else")
    add_policy(world.tenant_a, "other-tool", DENY, tool_name="calculator")
    add_policy(world.tenant_a, "disabled", DENY, mode=PolicyMode.DISABLED)
    path = tmp_path / "out.txt"
    turn = run(world.tenant_a, path)
    assert runs(path) == 1
    assert [p["name"] for p in nodes(turn)["policy"].outputs["policies"]] == ["default"]

    # Another tenant's policy never applies here.
    add_policy(world.tenant_b, "globex-denies", DENY)
    second = run(world.tenant_a, tmp_path / "two.txt", slug="writer-2")
    assert runs(tmp_path / "two.txt") == 1
    assert [p["name"] for p in nodes(second)["policy"].outputs["policies"]] == ["default"]


def test_decisions_record_the_version_they_used(world: World, tmp_path: Path) -> None:
    policy = add_policy(world.tenant_a, "toggle", DENY, mode=PolicyMode.REPORT_ONLY)
    first = run(world.tenant_a, tmp_path / "1.txt")
    policy = policy_services.policy_update(policy=policy, source=rego(reason="now fine"))
    second = run(world.tenant_a, tmp_path / "2.txt", slug="writer-2")

    def used(turn: Turn) -> tuple[int, str]:
        (entry,) = [p for p in nodes(turn)["policy"].outputs["policies"] if p["name"] == "toggle"]
        return entry["version"], entry["version_id"]

    versions = list(policy.versions.order_by("number"))
    assert used(first) == (1, str(versions[0].id))
    assert used(second) == (2, str(versions[1].id))


def test_a_malformed_result_is_a_deny_that_says_so(world: World, tmp_path: Path) -> None:
    add_policy(
        world.tenant_a, "sloppy", 'package warden\nimport rego.v1\n\ndecision := {"allow": 1}\n'
    )
    path = tmp_path / "out.txt"
    turn = run(world.tenant_a, path)
    assert runs(path) == 0
    (reason,) = nodes(turn)["policy"].outputs["reasons"]
    assert "'sloppy' v1 returned a malformed decision" in reason


# --------------------------------------------------------------------------- fail closed


def test_an_unreachable_engine_denies(world: World, tmp_path: Path, settings: Any) -> None:
    from devtools.embedded import free_port

    settings.OPA_URL = f"http://127.0.0.1:{free_port()}"
    path = tmp_path / "out.txt"
    turn = run(world.tenant_a, path)
    assert runs(path) == 0
    policy_node = nodes(turn)["policy"]
    assert policy_node.status == "deny"
    (evaluation,) = policy_node.outputs["policies"]
    assert evaluation["engine"] == "opa" and evaluation["error"] == "engine_error"
    assert "fail closed" in policy_node.outputs["reasons"][0]
    assert nodes(turn)["tool_call"].status == "denied"


def test_a_policy_that_runs_too_long_is_stopped_and_denies(
    world: World, tmp_path: Path, settings: Any
) -> None:
    runaway = (
        "package warden\nimport rego.v1\n\n"
        'decision := {"allow": count({1 | some x in numbers.range(1, 5000); '
        "some y in numbers.range(1, 5000)}) > 0}\n"
    )
    add_policy(world.tenant_a, "runaway", runaway, check=False)
    settings.WARDEN_POLICY_TIMEOUT_SECONDS = 0.5
    path = tmp_path / "out.txt"
    turn = run(world.tenant_a, path)
    assert runs(path) == 0
    policy_node = nodes(turn)["policy"]
    runaway_eval = next(p for p in policy_node.outputs["policies"] if p["name"] == "runaway")
    assert runaway_eval["error"] == "timeout"
    assert any("was stopped" in r and "fail closed" in r for r in policy_node.outputs["reasons"])


def test_a_crash_in_the_decision_denies_and_is_recorded(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr(policy_services, "decision_make", broken)
    path = tmp_path / "out.txt"
    turn = run(world.tenant_a, path)
    assert runs(path) == 0
    graph = nodes(turn)
    assert graph["policy"].status == "deny"
    assert "fail closed" in graph["policy"].outputs["reasons"][0]
    assert graph["tool_call"].status == "denied"


# --------------------------------------------------------------------------- the default policy


@pytest.mark.parametrize(
    ("risk_tier", "environment", "expected"),
    [
        ("low", "prod", "allow"),
        ("medium", "dev", "allow"),
        ("medium", "prod", "require_approval"),
        ("high", "dev", "require_approval"),
        ("critical", "dev", "deny"),
    ],
)
def test_the_default_policy_through_a_turn(
    world: World, tmp_path: Path, risk_tier: str, environment: str, expected: str
) -> None:
    tool = tool_services.tool_register_builtin(
        tenant=world.tenant_a, name="append_line", approve=True
    )
    tool_services.tool_update(tool=tool, risk_tier=risk_tier)
    path = tmp_path / "out.txt"
    turn = run(world.tenant_a, path, environment=environment)
    policy_node = nodes(turn)["policy"]
    assert policy_node.status == expected
    assert policy_node.inputs["input"]["tool"]["risk_tier"] == risk_tier
    assert runs(path) == (1 if expected == "allow" else 0)
    if expected == "require_approval":
        assert turn.status == TurnStatus.WAITING


def test_the_default_policy_denies_once_the_session_budget_is_spent(world: World) -> None:
    decision = policy_services.decision_make(
        tenant_id=world.tenant_a.id,
        agent_slug="any",
        tool_name="calculator",
        input_doc={
            "tool": {"name": "calculator", "risk_tier": "low"},
            "environment": "dev",
            "budget": {"tokens_used": 40000, "tokens_limit": 40000, "fraction_used": 1.0},
        },
    )
    assert decision.outcome == "deny"
    assert decision.reason == "the session's token budget is spent"
