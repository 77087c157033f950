"""Per-call tool credentials are single-use: each carries an id, the id is recorded for the
call it was minted for, and a second presentation within the token's lifetime is refused.

Real Redis (the test instance) holds the seen ids; a closed loopback port stands in for an
unreachable one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import jwt
import pytest
import redis
from django.conf import settings
from django.test import override_settings

from apps.tools.credentials import (
    CredentialRefused,
    MemoryReplayStore,
    RedisReplayStore,
    mint_credential,
    verify_credential,
)
from apps.tools.execution import credential_check, credential_mint, resolve_tools, tool_call
from apps.tools.executors.base import CallContext, ToolDefinition, ToolOutcome, ToolUnavailable
from apps.tools.executors.builtin import BuiltinCall, BuiltinExecutor, BuiltinRegistry
from apps.tools.executors.builtin import default_registry as builtins
from apps.tools.executors.wrapper import GuardedExecutor
from devtools.embedded import free_port
from tests.conftest import World

SIGNING_KEY = "k" * 48
SCOPE = {"tenant_id": "tenant-a", "tool": "git_status", "resource": "mcp:git"}


def _jti(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def closed_port_url() -> str:
    # free_port() binds then releases a loopback port: nothing listens there now.
    return f"redis://127.0.0.1:{free_port()}/0"


def test_tool_server_contract_refuses_a_replayed_credential(redis_client: redis.Redis) -> None:
    store = RedisReplayStore(redis_client, prefix=f"test:{uuid.uuid4().hex}:")
    token = mint_credential(signing_key=SIGNING_KEY, session_id="s1", ttl_s=60, **SCOPE)

    claims = verify_credential(token, signing_key=SIGNING_KEY, replay_store=store, **SCOPE)
    with pytest.raises(CredentialRefused) as replayed:
        verify_credential(token, signing_key=SIGNING_KEY, replay_store=store, **SCOPE)
    assert replayed.value.reason == "credential_replayed"
    assert replayed.value.jti == claims.jti

    # The seen id is forgotten when the token would have expired anyway, not before.
    ttl = redis_client.ttl(f"{store._prefix}{claims.jti}")
    assert 0 < ttl <= 60  # type: ignore[operator]

    fresh = mint_credential(signing_key=SIGNING_KEY, session_id="s1", ttl_s=60, **SCOPE)
    assert verify_credential(fresh, signing_key=SIGNING_KEY, replay_store=store, **SCOPE).jti != (
        claims.jti
    )


def test_a_refused_token_does_not_burn_its_id(redis_client: redis.Redis) -> None:
    """Someone who shows a stolen token to the wrong resource cannot make the real call fail."""
    store = RedisReplayStore(redis_client, prefix=f"test:{uuid.uuid4().hex}:")
    token = mint_credential(signing_key=SIGNING_KEY, session_id="s1", ttl_s=60, **SCOPE)
    with pytest.raises(CredentialRefused) as wrong:
        verify_credential(
            token, signing_key=SIGNING_KEY, replay_store=store, **{**SCOPE, "resource": "x"}
        )
    assert wrong.value.reason == "wrong_scope"
    assert verify_credential(token, signing_key=SIGNING_KEY, replay_store=store, **SCOPE)


@pytest.mark.django_db
def test_platform_verifies_a_credential_once_and_audits_the_replay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scope = {"tenant_id": str(uuid.uuid4()), "tool": "secure_echo", "resource": "mcp:secure"}
    token = credential_mint(session_id="s", **scope)
    assert credential_check(token=token, **scope).jti == _jti(token)

    with caplog.at_level(logging.INFO, logger="warden.audit"):
        with pytest.raises(CredentialRefused) as replayed:
            credential_check(token=token, **scope)
    assert replayed.value.reason == "credential_replayed"
    refusal = [r for r in caplog.records if r.getMessage() == "tool credential refused"]
    assert [(r.reason, r.jti) for r in refusal] == [  # type: ignore[attr-defined]
        ("credential_replayed", _jti(token))
    ]
    assert token not in caplog.text

    # A fresh credential for the same call scope is a different token and verifies.
    fresh = credential_mint(session_id="s", **scope)
    assert credential_check(token=fresh, **scope).jti == _jti(fresh) != _jti(token)


@pytest.mark.django_db
def test_verification_fails_closed_when_the_replay_store_is_unreachable(
    closed_port_url: str,
) -> None:
    scope = {"tenant_id": str(uuid.uuid4()), "tool": "secure_echo", "resource": "mcp:secure"}
    with override_settings(WARDEN_TOOL_CREDENTIAL_REPLAY_REDIS_URL=closed_port_url):
        token = credential_mint(session_id="s", **scope)
        with pytest.raises(CredentialRefused) as refused:
            credential_check(token=token, **scope)
    assert refused.value.reason == "replay_check_unavailable"
    assert refused.value.jti == _jti(token)

    # Same for a tool server using the store directly.
    dead = redis.Redis.from_url(closed_port_url, socket_connect_timeout=2, socket_timeout=2)
    token = mint_credential(signing_key=SIGNING_KEY, session_id="s1", ttl_s=60, **SCOPE)
    with pytest.raises(CredentialRefused) as direct:
        verify_credential(
            token, signing_key=SIGNING_KEY, replay_store=RedisReplayStore(dead), **SCOPE
        )
    assert direct.value.reason == "replay_check_unavailable"


def _credential_echo(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
    assert call.ctx.credential is not None
    return {"jti": _jti(call.ctx.credential), "token": call.ctx.credential}


@pytest.fixture
def credential_echo() -> Iterator[str]:
    name = f"credential_echo_{uuid.uuid4().hex[:8]}"
    builtins.register(
        name,
        _credential_echo,
        description="Echo the call's credential.",
        input_schema={},
        takes_credential=True,
    )
    yield name
    builtins.unregister(name)


def _call_audited(world: World, name: str, caplog: pytest.LogCaptureFixture) -> ToolOutcome:
    """One call of builtin `name` for tenant A, with the audit log captured."""
    (tool,) = resolve_tools(tenant_id=world.tenant_a.id, names=[name]).values()
    with caplog.at_level(logging.INFO, logger="warden.audit"):
        return tool_call(
            tool,
            {},
            tenant_id=str(world.tenant_a.id),
            session_id="session-1",
            turn_id="turn-1",
            idempotency_key="turn-1:s0:c0",
        )


@pytest.mark.django_db
def test_the_credential_id_is_recorded_for_the_call_it_was_minted_for(
    world: World, credential_echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    outcome = _call_audited(world, credential_echo, caplog)
    assert outcome.ok, outcome.error_message
    minted = [r for r in caplog.records if r.getMessage() == "tool credential minted"]
    assert [
        (r.jti, r.turn_id, r.node_id, r.tool, r.tenant_id)  # type: ignore[attr-defined]
        for r in minted
    ] == [
        (outcome.content["jti"], "turn-1", "turn-1:s0:c0", credential_echo, str(world.tenant_a.id))
    ]
    assert outcome.content["token"] not in caplog.text

    # The token the tool received is good for exactly one presentation.
    scope = {
        "tenant_id": str(world.tenant_a.id),
        "tool": credential_echo,
        "resource": f"builtin:{credential_echo}",
    }
    credential_check(token=outcome.content["token"], **scope)
    with pytest.raises(CredentialRefused, match="already used"):
        credential_check(token=outcome.content["token"], **scope)


def _credential_seen(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
    return {"credential": call.ctx.credential}


@pytest.mark.django_db
def test_a_tool_that_presents_no_credential_is_given_none_and_none_is_minted(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A credential exists only for a call that hands it on: a builtin not registered with
    `takes_credential` (like an MCP server with no credential header or variable) gets none,
    so no token valid for its scope is signed, audited or left lying in its context."""
    name = f"credential_blind_{uuid.uuid4().hex[:8]}"
    builtins.register(name, _credential_seen, description="", input_schema={})
    try:
        outcome = _call_audited(world, name, caplog)
    finally:
        builtins.unregister(name)
    assert outcome.ok, outcome.error_message
    assert outcome.content == {"credential": None}
    assert not [r for r in caplog.records if r.getMessage() == "tool credential minted"]


def test_a_retried_call_presents_a_new_credential(redis_client: redis.Redis) -> None:
    """Single-use would break retries if a retry re-sent the token the failed attempt used."""
    registry = BuiltinRegistry()
    seen: list[str] = []

    def flaky(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
        assert call.ctx.credential is not None
        seen.append(call.ctx.credential)
        if len(seen) == 1:
            raise ToolUnavailable("not yet", maybe_executed=False)
        return {"ok": True}

    registry.register("flaky", flaky, description="", input_schema={})
    store = RedisReplayStore(redis_client, prefix=f"test:{uuid.uuid4().hex}:")

    def mint() -> str:
        return mint_credential(signing_key=SIGNING_KEY, session_id="s1", ttl_s=60, **SCOPE)

    executor = BuiltinExecutor(registry)
    try:
        definition: ToolDefinition = registry.get("flaky").definition()
        ctx = CallContext(
            tenant_id="tenant-a",
            session_id="s1",
            turn_id="t",
            idempotency_key="t:0",
            credential=mint(),
            credential_factory=mint,
        )
        outcome = GuardedExecutor({"builtin": executor}, sleep=lambda s: None).execute(
            definition, {}, ctx=ctx
        )
    finally:
        executor.shutdown()
    assert outcome.ok and outcome.attempts == 2
    assert len(set(seen)) == 2
    # Each attempt's token verifies on its own: the server would have accepted the retry.
    for token in seen:
        verify_credential(token, signing_key=SIGNING_KEY, replay_store=store, **SCOPE)


def test_verifiers_cannot_forget_the_replay_check() -> None:
    """The store is a required argument: a tool server that leaves it out fails loudly rather
    than accepting replays; a single-process server gets the same refusal from memory."""
    token = mint_credential(signing_key=SIGNING_KEY, session_id="s", ttl_s=60, **SCOPE)
    with pytest.raises(TypeError):
        verify_credential(token, signing_key=SIGNING_KEY, **SCOPE)  # type: ignore[call-arg]
    store = MemoryReplayStore()
    assert verify_credential(token, signing_key=SIGNING_KEY, replay_store=store, **SCOPE)
    with pytest.raises(CredentialRefused) as refused:
        verify_credential(token, signing_key=SIGNING_KEY, replay_store=store, **SCOPE)
    assert refused.value.reason == "credential_replayed"
