"""SSRF to loopback: a tenant points an MCP server, a model endpoint or http_fetch at the
platform's own host, in every spelling of loopback. The listener there sees no connection.

The operator allowlist is empty here (the test settings allow loopback for the other tests).
"""

from __future__ import annotations

import pytest
from django.test import override_settings

from apps.tools import builtins
from apps.tools.executors.base import CallContext
from apps.tools.executors.builtin import BuiltinExecutor, BuiltinRegistry
from apps.tools.executors.wrapper import CircuitBreakers, GuardedExecutor
from tests.conftest import World
from tests.security.egress_fixtures import (
    LOOPBACK_SPELLINGS,
    TRANSPORTS,
    Listener,
    ask_model,
    listener_fixture,  # noqa: F401  (a fixture)
    mcp_url,
    probe,
    writer,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_egress_allowed")]


@pytest.fixture
def no_egress_allowed():  # type: ignore[no-untyped-def]
    with override_settings(WARDEN_EGRESS_ALLOW=[]):
        yield


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mcp_discovery_never_connects_to_loopback(
    world: World, listener: Listener, transport: str, host: str
) -> None:
    status, body = probe(writer(world.tenant_a), transport, mcp_url(transport, host, listener.port))

    assert listener.count() == 0  # nothing reached it, so neither did the tenant's secret
    assert status == 502, body
    assert (body["code"], body["details"]["reason"]) == ("discovery_failed", "connect_failed")


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
@pytest.mark.parametrize("provider", ["openai", "anthropic", "local"])
def test_model_endpoint_never_connects_to_loopback(
    world: World, listener: Listener, provider: str, host: str
) -> None:
    failure = ask_model(
        world.tenant_a, provider=provider, base_url=f"http://{host}:{listener.port}/v1"
    )

    assert listener.count() == 0
    assert failure.attempts[0].error.code == "endpoint_unreachable", failure


def test_http_fetch_never_connects_to_loopback(
    world: World, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The operator allowlisted every spelling for http_fetch itself; the egress guard still
    # checks where each one resolves to.
    hosts = [f"{host}:{listener.port}" for host in LOOPBACK_SPELLINGS]
    monkeypatch.setattr(builtins, "_loaded", False)
    with override_settings(WARDEN_HTTP_FETCH_ALLOWED_HOSTS=hosts):
        registry = builtins.load_builtins(BuiltinRegistry())
    fetch = registry.get("http_fetch").definition()
    executor = GuardedExecutor(
        {"builtin": BuiltinExecutor(registry)},
        sleep=lambda _: None,
        breakers=CircuitBreakers(fail_max=1000, reset_timeout_s=1),
    )
    ctx = CallContext(tenant_id="t", session_id="s", turn_id="t", idempotency_key="k")

    outcomes = [
        executor.execute(fetch, {"url": f"http://{host}:{listener.port}/"}, ctx=ctx)
        for host in LOOPBACK_SPELLINGS
    ]

    assert listener.count() == 0
    assert {(o.ok, o.error_code) for o in outcomes} == {(False, "connect_failed")}
