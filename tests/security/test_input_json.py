"""Request JSON a hostile tenant can send: absurd nesting, NUL and lone surrogates, non-finite
numbers. Each is refused with a JSON 400 and a stable code — never a 500 — and nothing is saved.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.agents.models import AgentSession
from apps.llm.models import ModelEndpoint
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World, client_for

pytestmark = pytest.mark.django_db

DEEP = "[" * 10_000 + "]" * 10_000
DEEP_OBJECT = '{"a":' * 10_000 + "1" + "}" * 10_000


def _send(client: APIClient, method: str, path: str, body: str) -> object:
    return client.generic(method, path, body, content_type="application/json")


@pytest.fixture
def session(world: World) -> AgentSession:
    return make_session(make_agent(world.tenant_a, [{"final": "ok"}]))


def _bodies(session: AgentSession) -> list[tuple[str, str, str]]:
    return [
        ("POST", "/api/v1/sessions", f'{{"agent": "{session.agent_id}", "metadata": {DEEP}}}'),
        ("PUT", f"/api/v1/sessions/{session.id}/state", f'{{"state": {{"x": {DEEP_OBJECT}}}}}'),
        ("POST", f"/api/v1/sessions/{session.id}/turns", DEEP),
        (
            "POST",
            "/api/v1/model-endpoints",
            f'{{"name": "e", "provider": "openai", "model": "m", "options": {DEEP}}}',
        ),
        ("POST", "/api/v1/agents", DEEP_OBJECT),
        ("POST", "/api/v1/api-keys", DEEP),
    ]


def test_json_nested_10000_deep_is_a_400_on_every_endpoint(
    world: World, session: AgentSession
) -> None:
    client = client_for(world.tenant_a)
    endpoints_before = ModelEndpoint.objects.count()
    for method, path, body in _bodies(session):
        response = _send(client, method, path, body)
        assert response.status_code == 400, (path, response.content[:300])
        assert response.json()["code"] == "json_too_deep", path
    assert ModelEndpoint.objects.count() == endpoints_before
    assert AgentSession.objects.filter(tenant=world.tenant_a).count() == 1

    # Reasonable nesting still passes, and brackets inside strings are not nesting.
    state: object = "[" * 5000 + '\\"{' * 100
    for _ in range(30):
        state = {"k": state}
    response = client.put(f"/api/v1/sessions/{session.id}/state", {"state": state}, format="json")
    assert response.status_code == 200
    session.refresh_from_db()
    assert session.state == state


@pytest.mark.parametrize("bad", ["\\u0000", "\\ud800", "\\udfff", "a\\u0000b", "\\ude00\\ud83d"])
def test_nul_and_lone_surrogates_are_refused_in_every_json_field(
    world: World, session: AgentSession, bad: str
) -> None:
    client = client_for(world.tenant_a)
    agent = f'"agent": "{session.agent_id}"'
    cases = [
        ("POST", "/api/v1/sessions", f'{{{agent}, "metadata": {{"k": "{bad}"}}}}'),
        ("POST", "/api/v1/sessions", f'{{{agent}, "metadata": {{"{bad}": 1}}}}'),
        ("PUT", f"/api/v1/sessions/{session.id}/state", f'{{"state": {{"k": ["{bad}"]}}}}'),
        (
            "POST",
            "/api/v1/model-endpoints",
            f'{{"name": "e", "provider": "openai", "model": "m", "options": {{"h": "{bad}"}}}}',
        ),
        ("POST", f"/api/v1/sessions/{session.id}/turns", f'{{"message": "hi {bad}"}}'),
        ("POST", "/api/v1/agents", f'{{"name": "{bad}", "slug": "x"}}'),
    ]
    for method, path, body in cases:
        response = _send(client, method, path, body)
        assert response.status_code == 400, (path, body, response.content[:300])
        assert response.json()["code"] == "invalid_characters", path
    session.refresh_from_db()
    assert session.state == {}
    assert session.turns.count() == 0
    assert not ModelEndpoint.objects.filter(tenant=world.tenant_a, name="e").exists()
    assert AgentSession.objects.filter(tenant=world.tenant_a).count() == 1

    # A surrogate *pair* is an ordinary character, stored as such.
    response = _send(
        client,
        "PUT",
        f"/api/v1/sessions/{session.id}/state",
        '{"state": {"smile": "\\ud83d\\ude00"}}',
    )
    assert response.status_code == 200
    session.refresh_from_db()
    assert session.state == {"smile": "\U0001f600"}


@pytest.mark.parametrize("number", ["1e400", "-1e400", "[1e999]"])
def test_non_finite_numbers_are_refused(world: World, session: AgentSession, number: str) -> None:
    response = _send(
        client_for(world.tenant_a),
        "PUT",
        f"/api/v1/sessions/{session.id}/state",
        f'{{"state": {{"n": {number}}}}}',
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"


@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/tools?source=%00",
        "/api/v1/tools?server=%00",
        "/api/v1/sessions?x%00=1",
        "/api/v1/model-endpoints?page=%00",
    ],
)
def test_nul_in_query_parameters_is_a_400(world: World, query: str) -> None:
    response = client_for(world.tenant_a).get(query)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_characters"
