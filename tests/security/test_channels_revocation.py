"""An open stream ends with its principal.

Revoking or expiring a key, removing a membership, demoting it, or deactivating a user
or tenant closes that principal's websockets (4401; 4403 when only its role lost
access) and ends its SSE streams through the real daphne, within 5 seconds; a message
sent on the socket in the meantime starts nothing.

Expiry and the `.update()` cases fire no signal: they prove the periodic re-validation
(WARDEN_STREAM_REAUTH_SECONDS) and the per-message check, not only the signal nudge.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from apps.agents.models import Agent, AgentSession, Turn
from apps.tenants.identity import Identity
from apps.tenants.models import ApiKey, Membership, Role, Tenant
from apps.tenants.principals import identity_current
from apps.tenants.services import api_key_create, api_key_revoke
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World
from tests.security.channels_helpers import (
    receive_event,
    receive_until_close,
    session_cookie,
    sse_client,
    sse_events,
    ws_connect,
)

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("apps.agents.services.turn_dispatch", lambda **_: None)


@pytest.fixture
def agent(world: World) -> Agent:
    return make_agent(world.tenant_a, [{"final": "hi"}])


def _expire(key: ApiKey) -> None:
    ApiKey.objects.filter(id=key.id).update(expires_at=timezone.now() - timedelta(seconds=1))


def _revoke_silently(key: ApiKey) -> None:
    ApiKey.objects.filter(id=key.id).update(revoked_at=timezone.now())


def _remove_membership(user: Any, tenant: Tenant) -> None:
    Membership.objects.get(user=user, tenant=tenant).delete()


def _deactivate(user: Any) -> None:
    user.is_active = False
    user.save(update_fields=["is_active"])


def _demote(user: Any, tenant: Tenant, role: str) -> None:
    membership = Membership.objects.get(user=user, tenant=tenant)
    membership.role = role
    membership.save(update_fields=["role"])


def _turns(session: AgentSession) -> int:
    return Turn.objects.filter(session=session).count()


# --------------------------------------------------------------------------- websocket


@pytest.mark.asyncio
@pytest.mark.parametrize("end", [api_key_revoke, _expire], ids=["revoked", "expired"])
async def test_session_and_tenant_websockets_close_when_their_key_ends(
    world: World, agent: Agent, end: Any
) -> None:
    session = await sync_to_async(make_session)(agent, world.alice)
    key, raw = await sync_to_async(api_key_create)(
        tenant=world.tenant_a, name="k", scopes=["write"]
    )
    watcher = await ws_connect(f"/ws/sessions/{session.id}/", key=raw)
    tenant_ws = await ws_connect("/ws/tenant/", key=raw)
    await receive_event(tenant_ws, "connected")

    await sync_to_async(end)(key=key) if end is api_key_revoke else await sync_to_async(end)(key)

    for comm in (watcher, tenant_ws):
        code, frames = await receive_until_close(comm)
        assert code == 4401
        assert frames[-1]["data"]["code"] == "principal_revoked"
        await comm.disconnect()


@pytest.mark.asyncio
async def test_a_message_right_after_revocation_starts_no_turn(world: World, agent: Agent) -> None:
    session = await sync_to_async(make_session)(agent, world.alice)
    key, raw = await sync_to_async(api_key_create)(
        tenant=world.tenant_a, name="k", scopes=["write"]
    )
    comm = await ws_connect(f"/ws/sessions/{session.id}/", key=raw)
    # No signal: the stream learns of it only by checking the key with the message.
    await sync_to_async(_revoke_silently)(key)
    await comm.send_json_to({"type": "message", "content": "one more thing"})
    code, frames = await receive_until_close(comm)
    assert code == 4401
    assert not any(f["event"] == "ack" for f in frames)
    await comm.disconnect()
    assert await sync_to_async(_turns)(session) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("end", [_remove_membership, _deactivate], ids=["removed", "deactivated"])
async def test_console_users_websockets_close_when_membership_or_user_ends(
    world: World, agent: Agent, end: Any
) -> None:
    session = await sync_to_async(make_session)(agent, world.bob)
    cookie = await sync_to_async(session_cookie)(world.bob)
    watcher = await ws_connect(f"/ws/sessions/{session.id}/", cookie=cookie)
    tenant_ws = await ws_connect("/ws/tenant/", cookie=cookie)
    await receive_event(tenant_ws, "connected")

    if end is _remove_membership:
        await sync_to_async(end)(world.bob, world.tenant_a)
    else:
        await sync_to_async(end)(world.bob)

    for comm in (watcher, tenant_ws):
        code, _ = await receive_until_close(comm)
        assert code == 4401
        await comm.disconnect()


@pytest.mark.asyncio
async def test_deactivated_tenant_closes_its_websockets(world: World, agent: Agent) -> None:
    _, raw = await sync_to_async(api_key_create)(tenant=world.tenant_a, name="k", scopes=["read"])
    comm = await ws_connect("/ws/tenant/", key=raw)
    await receive_event(comm, "connected")
    world.tenant_a.is_active = False
    await sync_to_async(world.tenant_a.save)(update_fields=["is_active"])
    code, _ = await receive_until_close(comm)
    assert code == 4401
    await comm.disconnect()


@pytest.mark.asyncio
async def test_demoted_member_loses_turns_and_a_foreign_session_at_once(
    world: World, agent: Agent
) -> None:
    # alice (owner) watches bob's session; demoted to member she may no longer see it.
    bobs = await sync_to_async(make_session)(agent, world.bob)
    cookie = await sync_to_async(session_cookie)(world.alice)
    comm = await ws_connect(f"/ws/sessions/{bobs.id}/", cookie=cookie)
    await sync_to_async(_demote)(world.alice, world.tenant_a, Role.MEMBER)
    code, _ = await receive_until_close(comm)
    assert code == 4403
    await comm.disconnect()

    # bob, demoted to viewer, keeps watching his own session but can't send any more.
    cookie = await sync_to_async(session_cookie)(world.bob)
    comm = await ws_connect(f"/ws/sessions/{bobs.id}/", cookie=cookie)
    await sync_to_async(
        lambda: Membership.objects.filter(user=world.bob, tenant=world.tenant_a).update(
            role=Role.VIEWER
        )
    )()
    await comm.send_json_to({"type": "message", "content": "hello"})
    error, _ = await receive_event(comm, "error")
    assert error["data"]["code"] == "permission_denied"
    await comm.disconnect()
    assert await sync_to_async(_turns)(bobs) == 0


# --------------------------------------------------------------------------- SSE


def _sse_ends(url: str, headers: dict[str, str], end: Any) -> list[dict[str, Any]]:
    with sse_client() as client, client.stream("GET", url, headers=headers) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")  # the stream is open and subscribed
        end()
        # ReadTimeout (the test fails) if the stream stays open past the deadline.
        return list(sse_events(lines))


@pytest.mark.parametrize("end", ["revoke", "expire"])
def test_sse_ends_when_its_key_ends(world: World, agent: Agent, daphne_url: str, end: str) -> None:
    session = make_session(agent, world.alice)
    key, raw = api_key_create(tenant=world.tenant_a, name="k", scopes=["read"])
    events = _sse_ends(
        f"{daphne_url}/api/v1/sessions/{session.id}/events",
        {"Authorization": f"Bearer {raw}"},
        lambda: api_key_revoke(key=key) if end == "revoke" else _expire(key),
    )
    assert events[-1]["event"] == "error"
    assert events[-1]["data"]["code"] == "principal_revoked"


@pytest.mark.parametrize("end", ["remove", "deactivate"])
def test_sse_ends_when_membership_or_user_ends(
    world: World, agent: Agent, daphne_url: str, end: str
) -> None:
    session = make_session(agent, world.bob)
    events = _sse_ends(
        f"{daphne_url}/api/v1/sessions/{session.id}/events",
        {"Cookie": session_cookie(world.bob)},
        lambda: (
            _remove_membership(world.bob, world.tenant_a)
            if end == "remove"
            else _deactivate(world.bob)
        ),
    )
    assert events[-1]["data"]["code"] == "principal_revoked"


@pytest.mark.django_db
def test_an_oidc_identity_ends_when_its_token_expires(world: World) -> None:
    """Nothing in the database changes when a JWT expires: the stream must still end."""

    def jwt_identity(expires_at: float) -> Identity:
        return Identity(
            tenant=world.tenant_a,
            roles=frozenset({"member"}),
            via="jwt",
            user_id=world.bob.pk,
            expires_at=expires_at,
        )

    assert identity_current(jwt_identity(time.time() + 300)) is not None
    assert identity_current(jwt_identity(time.time() - 1)) is None
