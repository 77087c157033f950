"""One authorization model on every channel: what REST refuses, the websocket refuses too.

A read-only API key and a console user with the viewer role may watch a session, but
neither may start or cancel a turn — not over REST, not over `/ws/sessions/<id>/`.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from rest_framework.test import APIClient

from apps.agents import services
from apps.agents.models import Agent, AgentSession, Turn, TurnStatus
from apps.tenants.models import Role
from apps.tenants.services import api_key_create
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World
from tests.factories import MembershipFactory, UserFactory
from tests.security.channels_helpers import receive_event, session_cookie, ws_connect

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Queued turns stay queued: no worker runs them behind the test's back."""
    monkeypatch.setattr("apps.agents.services.turn_dispatch", lambda **_: None)


@pytest.fixture
def agent(world: World) -> Agent:
    return make_agent(world.tenant_a, [{"final": "hi"}])


@pytest.fixture
def viewer(world: World) -> Any:
    user = UserFactory(username="vera")
    MembershipFactory(tenant=world.tenant_a, user=user, role=Role.VIEWER)
    return user


def _turn_count(session: AgentSession) -> int:
    return Turn.objects.filter(session=session).count()


async def _refused_on_websocket(
    session: AgentSession, *, key: str | None = None, cookie: str | None = None
) -> None:
    queued = await sync_to_async(services.turn_enqueue)(session=session, message="queued")
    comm = await ws_connect(f"/ws/sessions/{session.id}/", key=key, cookie=cookie)

    await comm.send_json_to({"type": "message", "content": "run something"})
    error, _ = await receive_event(comm, "error")
    assert error["data"]["code"] == "permission_denied"

    await comm.send_json_to({"type": "cancel", "turn": str(queued.id)})
    error, _ = await receive_event(comm, "error")
    assert error["data"]["code"] == "permission_denied"

    # Still connected and still watching: a ping answers.
    await comm.send_json_to({"type": "ping"})
    await receive_event(comm, "pong")
    await comm.disconnect()

    assert await sync_to_async(_turn_count)(session) == 1
    await sync_to_async(queued.refresh_from_db)()
    assert queued.status == TurnStatus.QUEUED and not queued.cancel_requested


@pytest.mark.asyncio
async def test_read_only_key_can_neither_start_nor_cancel_turns_but_a_write_key_can(
    world: World, agent: Agent
) -> None:
    session = await sync_to_async(make_session)(agent, world.alice)
    _, read_key = await sync_to_async(api_key_create)(
        tenant=world.tenant_a, name="ro", scopes=["read"]
    )
    await _refused_on_websocket(session, key=read_key)

    # A write key on the same session still starts and cancels turns.
    _, write_key = await sync_to_async(api_key_create)(
        tenant=world.tenant_a, name="rw", scopes=["write"]
    )
    comm = await ws_connect(f"/ws/sessions/{session.id}/", key=write_key)
    await comm.send_json_to({"type": "message", "content": "hello"})
    ack, _ = await receive_event(comm, "ack")
    await comm.send_json_to({"type": "cancel", "turn": ack["turn"]})
    cancelled, _ = await receive_event(comm, "ack")
    assert cancelled["data"]["status"] == TurnStatus.CANCELLED
    await comm.disconnect()
    turn = await sync_to_async(Turn.objects.get)(id=ack["turn"])
    assert turn.status == TurnStatus.CANCELLED


@pytest.mark.asyncio
async def test_viewer_role_can_neither_start_nor_cancel_turns_over_websocket(
    world: World, agent: Agent, viewer: Any
) -> None:
    session = await sync_to_async(make_session)(agent, viewer)
    cookie = await sync_to_async(session_cookie)(viewer)
    await _refused_on_websocket(session, cookie=cookie)


def test_viewer_role_is_refused_by_rest_like_a_read_only_key(
    world: World, agent: Agent, viewer: Any
) -> None:
    session = make_session(agent, viewer)
    queued = services.turn_enqueue(session=session, message="queued")
    client = APIClient()
    client.force_login(viewer)

    response = client.post(f"/api/v1/sessions/{session.id}/turns", {"message": "x"}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    response = client.post(f"/api/v1/turns/{queued.id}/cancel")
    assert response.status_code == 403
    # Reading stays allowed, and the private scratchpad stays hidden.
    steps = client.get(f"/api/v1/turns/{queued.id}/steps")
    assert steps.status_code == 200
    assert Turn.objects.filter(session=session).count() == 1
