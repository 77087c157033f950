"""REST: tool arguments, results and turn texts are redacted for roles below admin (admins see
them as recorded); the scratchpad is redacted for everyone who may see it. The tenant's
redaction settings are an admin's to read and change, for their own tenant only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.agents import orchestrator, services
from apps.tenants.models import RedactionSettings, Role
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World, client_for
from tests.factories import MembershipFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]

EMAIL = "jane.doe@example.com"
IBAN = "DE89 3704 0044 0532 0130 00"
KEY = "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
URL = "/api/v1/tenant/redaction"


def _turn(world: World, tmp_path: Path) -> Any:
    script = [
        {
            "tool": "append_line",
            "arguments": {"path": str(tmp_path / "l.txt"), "text": "${last_user_message}"},
            "say": f"Thinking about {EMAIL} and {KEY}.",
        },
        {"final": "Done for ${last_user_message}."},
    ]
    agent = make_agent(world.tenant_a, script, tools=["append_line"], slug="api")
    session = make_session(agent, world.bob)
    turn = services.turn_enqueue(
        session=session, message=f"pay {IBAN} for {EMAIL}", requested_by=world.bob
    )
    assert orchestrator.turn_execute(turn_id=turn.id) == "completed"
    return turn


def _steps(client: APIClient, turn: Any) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/turns/{turn.id}/steps")
    assert response.status_code == 200
    return response.json()["results"]


def test_non_admins_get_redacted_details_admins_the_recorded_ones(
    world: World, tmp_path: Path, alice_client: APIClient, bob_client: APIClient
) -> None:
    turn = _turn(world, tmp_path)
    operator = UserFactory(username="olga")
    MembershipFactory(tenant=world.tenant_a, user=operator, role=Role.OPERATOR)
    olga = APIClient()
    olga.force_login(operator)

    for client in (bob_client, olga, client_for(world.tenant_a, ["write"])):
        steps = _steps(client, turn)
        body = json.dumps(steps)
        assert EMAIL not in body and IBAN not in body and KEY not in body
        (call,) = [s for s in steps if s["kind"] == "tool_call"]
        assert call["inputs"]["arguments"]["text"] == ("pay [REDACTED:iban] for [REDACTED:email]")
        detail = client.get(f"/api/v1/turns/{turn.id}").json()
        assert detail["user_message"] == "pay [REDACTED:iban] for [REDACTED:email]"
        assert EMAIL not in detail["final_answer"]

    # The operator reads the scratchpad (reasoning.read), redacted.
    pads = [s["scratchpad"] for s in _steps(olga, turn) if s.get("scratchpad")]
    assert pads and "[REDACTED:api_key]" in json.dumps(pads)

    for client in (alice_client, client_for(world.tenant_a, ["admin"])):
        steps = _steps(client, turn)
        (call,) = [s for s in steps if s["kind"] == "tool_call"]
        assert call["inputs"]["arguments"]["text"] == f"pay {IBAN} for {EMAIL}"
        assert client.get(f"/api/v1/turns/{turn.id}").json()["user_message"] == (
            f"pay {IBAN} for {EMAIL}"
        )
        # ... but not the private scratchpad: it never leaves unredacted.
        pads = json.dumps([s["scratchpad"] for s in steps if s.get("scratchpad")])
        assert KEY not in pads and EMAIL not in pads and "[REDACTED:api_key]" in pads


def test_admins_configure_their_tenants_redaction(
    world: World, alice_client: APIClient, charlie_client: APIClient
) -> None:
    assert alice_client.get(URL).json() == {
        "enabled": True,
        "kinds": ["email", "phone", "card", "iban", "national_id"],
        "always": ["api_key", "bearer_token", "jwt", "private_key"],
        "custom_patterns": [],
    }
    patterns = [{"name": "employee_id", "pattern": r"EMP-\d{6}"}]
    response = alice_client.patch(
        URL, {"kinds": ["email"], "custom_patterns": patterns}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["kinds"] == ["email"]
    assert alice_client.get(URL).json()["custom_patterns"] == patterns
    # Charlie (admin of the other tenant) sees and changes only his own.
    assert charlie_client.get(URL).json()["custom_patterns"] == []
    charlie_client.patch(URL, {"enabled": False}, format="json")
    assert RedactionSettings.objects.get(tenant=world.tenant_a).enabled is True
    assert RedactionSettings.objects.get(tenant=world.tenant_b).enabled is False


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"custom_patterns": [{"name": "evil", "pattern": "(a+)+$"}]}, "pattern_catastrophic"),
        ({"custom_patterns": [{"name": "evil", "pattern": "(?:a|aa)+$"}]}, "pattern_catastrophic"),
        ({"custom_patterns": [{"name": "bad", "pattern": "[oops"}]}, "pattern_invalid"),
        ({"custom_patterns": [{"name": "all", "pattern": ".*"}]}, "pattern_matches_empty"),
        ({"custom_patterns": [{"name": "email", "pattern": "x\\d"}]}, "pattern_name_taken"),
        ({"custom_patterns": [{"name": "x", "pattern": "x\\d", "flags": "i"}]}, None),
        ({"kinds": ["ssn"]}, None),
        ({"custom_patterns": "EMP-\\d+"}, None),
    ],
)
def test_bad_settings_are_a_400_with_a_code_and_change_nothing(
    world: World, alice_client: APIClient, body: dict[str, Any], code: str | None
) -> None:
    response = alice_client.patch(URL, body, format="json")
    assert response.status_code == 400, response.content
    if code is not None:
        assert response.json()["code"] == code
    assert not RedactionSettings.objects.filter(tenant=world.tenant_a).exists()


def test_below_admin_nobody_reads_or_changes_the_settings(
    world: World, bob_client: APIClient
) -> None:
    operator_key = client_for(world.tenant_a, ["write"])
    for client in (bob_client, operator_key):
        assert client.get(URL).status_code == 403
        response = client.patch(URL, {"enabled": False}, format="json")
        assert response.status_code == 403
    assert not RedactionSettings.objects.filter(tenant=world.tenant_a).exists()
