"""REST for agents, endpoints, sessions and turns: shapes, validation, permissions."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis
from django.test import override_settings
from rest_framework.test import APIClient

from apps.agents import orchestrator
from apps.agents.models import Agent, Turn
from apps.llm.models import ModelEndpoint
from tests.agents.conftest import make_session
from tests.conftest import World, client_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]


def test_operator_builds_an_agent_over_rest(alice_client: APIClient) -> None:
    endpoint = alice_client.post(
        "/api/v1/model-endpoints",
        {
            "name": "gpt",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "api_key": "sk-secret",
            "allowed_sensitivities": ["public", "internal", "confidential"],
            "tier": "large",
        },
        format="json",
    )
    assert endpoint.status_code == 201, endpoint.json()
    assert endpoint.json()["has_api_key"] is True
    assert "sk-secret" not in endpoint.content.decode()
    stored = ModelEndpoint.objects.get(name="gpt")
    assert stored.api_key_encrypted and "sk-secret" not in stored.api_key_encrypted

    agent = alice_client.post(
        "/api/v1/agents",
        {
            "name": "Helper",
            "slug": "helper",
            "system_prompt": "Be useful.",
            "allowed_endpoints": [endpoint.json()["id"]],
            "allowed_tools": ["calculator"],
            "model_tier": "large",
            "max_steps": 4,
        },
        format="json",
    )
    assert agent.status_code == 201, agent.json()
    assert agent.json()["allowed_endpoints"] == ["gpt"]
    changed = alice_client.patch(
        f"/api/v1/agents/{agent.json()['id']}", {"max_steps": 9}, format="json"
    )
    assert changed.json()["max_steps"] == 9


def test_members_cannot_change_agents(world: World, bob_client: APIClient) -> None:
    assert bob_client.get("/api/v1/agents").status_code == 200
    response = bob_client.post("/api/v1/agents", {"name": "x", "slug": "x"}, format="json")
    assert response.status_code == 403


def test_bad_endpoint_input_is_a_400(alice_client: APIClient) -> None:
    response = alice_client.post(
        "/api/v1/model-endpoints",
        {
            "name": "s",
            "provider": "scripted",
            "model": "s",
            "options": {"script": [{"nonsense": 1}]},
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_endpoint"
    assert "step 1" in response.json()["message"]
    unknown = alice_client.post(
        "/api/v1/model-endpoints",
        {
            "name": "s",
            "provider": "carrier-pigeon",
            "model": "s",
        },
        format="json",
    )
    assert unknown.status_code == 400
    assert "provider" in unknown.json()["details"]


def test_send_a_message_gets_202_with_stream_links(
    world: World, two_tool_agent: Agent, alice_client: APIClient
) -> None:
    created = alice_client.post(
        "/api/v1/sessions", {"agent": str(two_tool_agent.id), "environment": "stage"}, format="json"
    )
    assert created.status_code == 201, created.json()
    session_id = created.json()["id"]
    response = alice_client.post(
        f"/api/v1/sessions/{session_id}/turns", {"message": "hi"}, format="json"
    )
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["seq"] == 1
    assert body["links"]["events"] == f"/api/v1/sessions/{session_id}/events"
    assert body["links"]["websocket"] == f"/ws/sessions/{session_id}/"

    orchestrator.turn_execute(turn_id=body["id"])
    turn = alice_client.get(f"/api/v1/turns/{body['id']}").json()
    assert turn["status"] == "completed"
    steps = alice_client.get(f"/api/v1/turns/{body['id']}/steps").json()["results"]
    assert [s["kind"] for s in steps].count("tool_call") == 2
    assert "scratchpad" in steps[0]  # alice is the owner: she sees the private reasoning


def test_end_users_see_rationale_but_not_the_scratchpad(
    world: World, two_tool_agent: Agent, bob_client: APIClient
) -> None:
    session = make_session(two_tool_agent, world.bob)
    turn = bob_client.post(
        f"/api/v1/sessions/{session.id}/turns", {"message": "hi"}, format="json"
    ).json()
    orchestrator.turn_execute(turn_id=turn["id"])
    steps = bob_client.get(f"/api/v1/turns/{turn['id']}/steps").json()["results"]
    assert steps and all("scratchpad" not in s for s in steps)
    model_steps = [s for s in steps if s["kind"] == "model_call"]
    assert model_steps[0]["outputs"]["rationale"] == "Checking the time."


def test_members_only_see_their_own_sessions(
    world: World, two_tool_agent: Agent, bob_client: APIClient
) -> None:
    alices = make_session(two_tool_agent, world.alice)
    bobs = make_session(two_tool_agent, world.bob)
    listed = {s["id"] for s in bob_client.get("/api/v1/sessions").json()["results"]}
    assert listed == {str(bobs.id)}
    assert bob_client.get(f"/api/v1/sessions/{alices.id}").status_code == 404
    # Nor may he send to it, or stream it; his own he may read, with its agent.
    refused = bob_client.post(f"/api/v1/sessions/{alices.id}/turns", {"message": "hi"})
    assert refused.status_code == 404
    assert bob_client.get(f"/api/v1/sessions/{alices.id}/events?follow=0").status_code == 404
    own = bob_client.get(f"/api/v1/sessions/{bobs.id}")
    assert own.status_code == 200
    assert own.json()["agent"] == str(two_tool_agent.id)


def test_a_turn_sent_with_an_api_key_takes_three_redis_round_trips(
    world: World, two_tool_agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before the key is read, the address's failed authentications; once it is, the
    # address's and the key's rate windows, in one script; then the budgets' headroom.
    # Counted on this thread only: the turn's event goes out from a background sender.
    here, trips = threading.get_ident(), []
    command, pipeline = redis.Redis.execute_command, redis.client.Pipeline.execute

    def counted_command(self: redis.Redis, *args: Any, **options: Any) -> Any:
        if threading.get_ident() == here:
            trips.append(str(args[0]))
        return command(self, *args, **options)

    def counted_pipeline(self: redis.client.Pipeline, *args: Any, **options: Any) -> Any:
        if threading.get_ident() == here:
            trips.append("pipeline")
        return pipeline(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", counted_command)
    monkeypatch.setattr(redis.client.Pipeline, "execute", counted_pipeline)
    client = client_for(world.tenant_a)
    for _ in range(2):  # the first may load the scripts into Redis
        session = make_session(two_tool_agent)
        trips.clear()
        sent = client.post(f"/api/v1/sessions/{session.id}/turns", {"message": "hi"}, format="json")
        assert sent.status_code == 202
    assert trips == ["EVALSHA"] * 3


@pytest.mark.parametrize(
    ("message", "code"),
    [("", "empty_message"), ("   \n", "empty_message"), ("x" * 101, "message_too_long")],
)
@override_settings(WARDEN_MAX_MESSAGE_CHARS=100)
def test_bad_messages_are_refused(
    world: World, two_tool_agent: Agent, alice_client: APIClient, message: str, code: str
) -> None:
    session = make_session(two_tool_agent, world.alice)
    response = alice_client.post(
        f"/api/v1/sessions/{session.id}/turns", {"message": message}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert not Turn.objects.filter(session=session).exists()


def test_non_string_message_is_a_validation_error(
    world: World, two_tool_agent: Agent, alice_client: APIClient
) -> None:
    session = make_session(two_tool_agent, world.alice)
    response = alice_client.post(
        f"/api/v1/sessions/{session.id}/turns", {"message": {"a": 1}}, format="json"
    )
    assert response.status_code == 400


def test_closed_session_refuses_turns_and_cancels_queued_ones(
    world: World, two_tool_agent: Agent, alice_client: APIClient
) -> None:
    session = make_session(two_tool_agent, world.alice)
    queued = alice_client.post(
        f"/api/v1/sessions/{session.id}/turns", {"message": "1"}, format="json"
    ).json()
    closed = alice_client.post(f"/api/v1/sessions/{session.id}/close")
    assert closed.json()["status"] == "closed"
    assert Turn.objects.get(id=queued["id"]).status == "cancelled"
    response = alice_client.post(
        f"/api/v1/sessions/{session.id}/turns", {"message": "2"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "session_not_active"


def test_cancel_twice_is_a_conflict(
    world: World, two_tool_agent: Agent, alice_client: APIClient
) -> None:
    session = make_session(two_tool_agent, world.alice)
    turn = alice_client.post(
        f"/api/v1/sessions/{session.id}/turns", {"message": "1"}, format="json"
    ).json()
    assert alice_client.post(f"/api/v1/turns/{turn['id']}/cancel").json()["status"] == "cancelled"
    again = alice_client.post(f"/api/v1/turns/{turn['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["code"] == "turn_not_cancellable"


@override_settings(WARDEN_MAX_QUEUED_TURNS=2)
def test_backpressure_on_a_flooded_session(world: World, two_tool_agent: Agent) -> None:
    client = client_for(world.tenant_a, scopes=["write"])
    session = make_session(two_tool_agent)
    codes = [
        client.post(
            f"/api/v1/sessions/{session.id}/turns", {"message": "x"}, format="json"
        ).status_code
        for _ in range(3)
    ]
    assert codes == [202, 202, 409]


def test_session_state_expires(
    world: World, two_tool_agent: Agent, alice_client: APIClient
) -> None:
    session = make_session(two_tool_agent, world.alice)
    url = f"/api/v1/sessions/{session.id}/state"
    assert (
        alice_client.put(
            url, {"state": {"cart": [1]}, "ttl_seconds": 60}, format="json"
        ).status_code
        == 200
    )
    assert alice_client.get(url).json()["state"] == {"cart": [1]}
    from datetime import timedelta

    from django.utils import timezone

    from apps.agents.models import AgentSession

    AgentSession.objects.filter(id=session.id).update(
        state_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert alice_client.get(url).json()["state"] == {}


def test_unknown_agent_for_a_session_is_404(alice_client: APIClient) -> None:
    response = alice_client.post(
        "/api/v1/sessions", {"agent": "00000000-0000-0000-0000-000000000000"}, format="json"
    )
    assert response.status_code == 404


def test_sse_requires_auth_and_checks_last_event_id(
    world: World, two_tool_agent: Agent, alice_client: APIClient
) -> None:
    session = make_session(two_tool_agent, world.alice)
    url = f"/api/v1/sessions/{session.id}/events"
    assert APIClient().get(url).status_code == 401
    bad = alice_client.get(url, HTTP_LAST_EVENT_ID="yesterday")
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_last_event_id"


@pytest.mark.parametrize(
    ("query", "headers", "code"),
    [
        # Beyond the bigint event ids: refused before it reaches PostgreSQL.
        ("", {"HTTP_LAST_EVENT_ID": str(2**63)}, "invalid_last_event_id"),
        ("", {"HTTP_LAST_EVENT_ID": "-1"}, "invalid_last_event_id"),
        # A malformed query spelling is refused even when the header is fine.
        ("?last_event_id=soon", {"HTTP_LAST_EVENT_ID": "0"}, "invalid_last_event_id"),
        # Anything but a boolean used to mean "follow": a stream that never ends.
        ("?follow=maybe", {}, "invalid_follow"),
    ],
)
def test_sse_refuses_a_malformed_resume_point_or_follow(
    world: World,
    two_tool_agent: Agent,
    alice_client: APIClient,
    query: str,
    headers: dict[str, str],
    code: str,
) -> None:
    session = make_session(two_tool_agent, world.alice)
    response = alice_client.get(f"/api/v1/sessions/{session.id}/events{query}", **headers)
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_sse_answers_other_methods_405_with_allow(
    world: World, two_tool_agent: Agent, alice_client: APIClient
) -> None:
    session = make_session(two_tool_agent, world.alice)
    response = alice_client.post(f"/api/v1/sessions/{session.id}/events")
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert response.json()["code"] == "method_not_allowed"
