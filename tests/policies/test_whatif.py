"""Policy what-if over recorded tool calls: the decisions a draft version would change, over
REST and in the console; bounded, and failing closed when the version cannot be evaluated."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.agents import orchestrator, services
from apps.agents.models import ActionNode, AgentSession, Turn, TurnStatus
from apps.policies import services as policy_services
from apps.policies.models import Policy, PolicyMode
from apps.policies.whatif import PolicyEvalFailed, policy_what_if
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]

ALLOW_ALL = """\
package warden

import rego.v1

decision := {"allow": true}
"""

# Denies one exact expression: only a what-if that evaluates the call's real arguments (the
# decision node keeps their shapes only) can flag it.
NO_SIX_TIMES_SEVEN = """\
package warden

import rego.v1

decision := {"allow": false, "reasons": ["6 * 7 is not allowed"]} if {
	input.arguments.expression == "6 * 7"
} else := {"allow": true}
"""

# Defined for the sample input only: undefined (a malformed decision) for any real call.
ONLY_THE_SAMPLE = """\
package warden

import rego.v1

decision := {"allow": true} if input.tool.name == "sample"
"""


def _run(session: AgentSession, message: str) -> Turn:
    turn = services.turn_enqueue(session=session, message=message)
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED, turn.detail
    return turn


@pytest.fixture
def recorded(world: World) -> AgentSession:
    """One turn: clock_now and calculator("6 * 7"), both allowed by the default policy."""
    script = [
        {"tool": "clock_now", "arguments": {"timezone": "UTC"}},
        {"tool": "calculator", "arguments": {"expression": "6 * 7"}},
        {"final": "Answer: ${tool_result_2}."},
    ]
    agent = make_agent(world.tenant_a, script, tools=["clock_now", "calculator"])
    session = make_session(agent, world.alice)
    _run(session, "time and 6*7?")
    return session


def _draft(world: World, source: str, name: str = "guard") -> Policy:
    """A policy saved report-only: the draft a what-if is for."""
    return policy_services.policy_create(
        tenant=world.tenant_a, name=name, source=source, mode=PolicyMode.REPORT_ONLY
    )


def test_what_if_flags_the_decision_that_would_change(world: World, recorded: AgentSession) -> None:
    policy = _draft(world, NO_SIX_TIMES_SEVEN)
    report = policy_what_if(policy=policy, session_ids=[recorded.id])
    assert (report.evaluated, report.in_scope, report.skipped) == (2, 2, 0)
    assert report.version == 1 and report.version_mode == PolicyMode.REPORT_ONLY
    assert len(report.changed) == 1
    change = report.changed[0]
    turn = Turn.objects.get(session=recorded)
    assert change["call"]["session"] == str(recorded.id)
    assert change["call"]["turn"] == str(turn.id)
    assert change["call"]["tool"] == "calculator"
    assert change["call"]["node_id"] == f"{turn.id}:1:0"
    assert change["call"]["arguments_restored"] is True
    # The report shows the arguments' shapes, never their values.
    assert "6 * 7" not in str(change["call"]["arguments"])
    assert change["old"] == {"outcome": "allow", "reasons": []}
    assert change["new"] == {"outcome": "deny", "reasons": ["6 * 7 is not allowed"]}
    assert dict(report.transitions) == {"allow->deny": 1}


def test_what_if_flags_nothing_when_nothing_changes(world: World, recorded: AgentSession) -> None:
    report = policy_what_if(
        policy=_draft(world, ALLOW_ALL), since=timezone.now() - timedelta(hours=1)
    )
    assert report.evaluated == 2 and report.changed == []
    assert not report.truncated


def test_what_if_takes_the_newest_draft_and_a_named_version(
    world: World, recorded: AgentSession
) -> None:
    policy = policy_services.policy_create(
        tenant=world.tenant_a, name="guard", source=ALLOW_ALL, mode=PolicyMode.ENFORCE
    )
    # Only an enforced version: it is the one evaluated.
    assert policy_what_if(policy=policy, session_ids=[recorded.id]).version == 1
    policy = policy_services.policy_update(
        policy=policy, source=NO_SIX_TIMES_SEVEN, mode=PolicyMode.REPORT_ONLY
    )
    report = policy_what_if(policy=policy, session_ids=[recorded.id])
    assert (report.version, len(report.changed)) == (2, 1)
    named = policy_what_if(policy=policy, version_number=1, session_ids=[recorded.id])
    assert (named.version, named.changed) == (1, [])


def test_what_if_is_bounded_and_pages_on(world: World, recorded: AgentSession) -> None:
    policy = _draft(world, NO_SIX_TIMES_SEVEN)
    first = policy_what_if(policy=policy, session_ids=[recorded.id], limit=1)
    assert first.truncated and first.next_after and first.evaluated == 1
    rest = policy_what_if(policy=policy, session_ids=[recorded.id], after=first.next_after, limit=1)
    assert not rest.truncated and rest.evaluated == 1
    assert len(first.changed) + len(rest.changed) == 1


def test_what_if_fails_closed_when_the_version_cannot_be_evaluated(
    world: World, recorded: AgentSession
) -> None:
    with pytest.raises(PolicyEvalFailed) as caught:
        policy_what_if(policy=_draft(world, ONLY_THE_SAMPLE), session_ids=[recorded.id])
    assert caught.value.code == "policy_eval_failed"
    assert "undefined" in caught.value.details["error"]


def test_a_scoped_version_leaves_other_tools_alone(world: World, recorded: AgentSession) -> None:
    policy = policy_services.policy_create(
        tenant=world.tenant_a,
        name="clock-only",
        source=NO_SIX_TIMES_SEVEN,
        mode=PolicyMode.REPORT_ONLY,
        tool_name="clock_now",
    )
    report = policy_what_if(policy=policy, session_ids=[recorded.id])
    assert (report.evaluated, report.in_scope, report.changed) == (2, 1, [])


# --------------------------------------------------------------------------- REST


def _url(policy: Policy) -> str:
    return f"/api/v1/policies/{policy.id}/what-if"


def test_rest_what_if_reports_changes(
    world: World, alice_client: APIClient, recorded: AgentSession
) -> None:
    policy = _draft(world, NO_SIX_TIMES_SEVEN)
    response = alice_client.post(_url(policy), {"sessions": [str(recorded.id)]}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["changed_count"] == 1 and body["transitions"] == {"allow->deny": 1}
    assert body["changed"][0]["new"]["outcome"] == "deny"
    since = (timezone.now() - timedelta(minutes=5)).isoformat()
    response = alice_client.post(_url(policy), {"since": since, "limit": 1}, format="json")
    assert response.status_code == 200
    assert response.json()["truncated"] is True and response.json()["next_after"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "validation_error"),
        ({"sessions": [], "since": "2025-01-01T00:00:00Z"}, "validation_error"),
        ({"sessions": ["00000000-0000-0000-0000-000000000000"]}, "unknown_session"),
        ({"since": "yesterday"}, "validation_error"),
        ({"since": "2025-01-01T00:00:00Z", "after": "garbage"}, "invalid_cursor"),
        ({"since": "2025-01-01T00:00:00Z", "mode": "x"}, "unknown_field"),
    ],
)
def test_rest_what_if_bad_input_is_a_stable_400(
    world: World, alice_client: APIClient, recorded: AgentSession, body: dict, code: str
) -> None:
    response = alice_client.post(_url(_draft(world, ALLOW_ALL)), body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code


def test_rest_what_if_eval_failure_and_unknown_version(
    world: World, alice_client: APIClient, recorded: AgentSession
) -> None:
    policy = _draft(world, ONLY_THE_SAMPLE)
    body = {"sessions": [str(recorded.id)]}
    response = alice_client.post(_url(policy), body, format="json")
    assert response.status_code == 400 and response.json()["code"] == "policy_eval_failed"
    response = alice_client.post(_url(policy), {**body, "version": 9}, format="json")
    assert response.status_code == 404 and response.json()["code"] == "version_not_found"


def test_rest_what_if_too_many_sessions(
    world: World, alice_client: APIClient, recorded: AgentSession, settings: object
) -> None:
    settings.WARDEN_WHATIF_MAX_SESSIONS = 1  # type: ignore[attr-defined]
    other = make_session(recorded.agent, world.alice)
    body = {"sessions": [str(recorded.id), str(other.id)]}
    response = alice_client.post(_url(_draft(world, ALLOW_ALL)), body, format="json")
    assert response.status_code == 400 and response.json()["code"] == "too_many_sessions"


# --------------------------------------------------------------------------- console


def test_console_runs_the_what_if_for_a_window(
    world: World, alice_client: APIClient, recorded: AgentSession
) -> None:
    policy = _draft(world, NO_SIX_TIMES_SEVEN)
    change = alice_client.get(f"/admin/policies/policy/{policy.id}/change/")
    assert change.status_code == 200
    page = f"/admin/policies/policy/{policy.id}/what-if/"
    assert page in change.content.decode()
    assert alice_client.get(page).status_code == 200
    response = alice_client.post(page, {"version": 1, "since": "", "sessions": ""})
    assert response.status_code == 200
    html = response.content.decode()
    assert "1 decision would change" in html
    assert "calculator" in html and "6 * 7 is not allowed" in html
    # The changelist action leads to the same page.
    action = alice_client.post(
        "/admin/policies/policy/",
        {"action": "run_what_if", "_selected_action": [str(policy.id)]},
    )
    assert action.status_code == 302 and action["Location"].endswith(page)


def test_console_what_if_of_another_tenants_policy_is_404(
    world: World, charlie_client: APIClient, recorded: AgentSession
) -> None:
    policy = _draft(world, NO_SIX_TIMES_SEVEN)
    page = f"/admin/policies/policy/{policy.id}/what-if/"
    assert charlie_client.get(page).status_code == 404
    assert charlie_client.post(page, {"version": 1}).status_code == 404


def test_recorded_decisions_keep_no_argument_values(recorded: AgentSession) -> None:
    """What the what-if relies on: the decision node has shapes, the call node the values."""
    node = ActionNode.objects.get(turn__session=recorded, kind="policy", node_id__contains=":1:0")
    assert "6 * 7" not in str(node.inputs)
