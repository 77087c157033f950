"""A tenant cannot tell why a connection failed, so discovery and model calls are no port
scanner: a closed port, an open port with something else behind it (a garbage-speaking
listener, the platform's own Redis and PostgreSQL), DNS and TLS failures and the guard's
refusal all give the same answer. The operator log says which it was.

The operator allowlist allows 127.0.0.1 here, so that the first cases are really attempted.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import override_settings

from apps.llm.models import ModelEndpoint
from apps.tools import builtins
from apps.tools.executors.base import CallContext
from apps.tools.executors.builtin import BuiltinExecutor, BuiltinRegistry
from apps.tools.executors.wrapper import CircuitBreakers, GuardedExecutor
from tests.conftest import World
from tests.security.egress_fixtures import (
    FakeDns,
    Listener,
    ask,
    closed_port,
    discover,
    fake_dns_fixture,  # noqa: F401  (a fixture)
    listener_fixture,  # noqa: F401  (a fixture)
    model_router,
    register_server,
    writer,
)

pytestmark = pytest.mark.django_db
LOOPBACK_ONLY = ["127.0.0.1"]


def service_ports() -> dict[str, int]:
    """The platform's own embedded services, as the finding named them."""
    return {
        "redis": urlsplit(os.environ["REDIS_URL"]).port or 6379,
        "postgres": urlsplit(os.environ["DATABASE_URL"]).port or 5432,
    }


def targets(listener: Listener) -> dict[str, tuple[str, list[str]]]:
    """cause → (host:port or URL authority, operator allowlist in force)."""
    ports = service_ports()
    return {
        "closed_port": (f"127.0.0.1:{closed_port()}", LOOPBACK_ONLY),
        "garbage_listener": (f"127.0.0.1:{listener.port}", LOOPBACK_ONLY),
        "redis": (f"127.0.0.1:{ports['redis']}", LOOPBACK_ONLY),
        "postgres": (f"127.0.0.1:{ports['postgres']}", LOOPBACK_ONLY),
        "dns_failure": ("does-not-resolve.test:80", LOOPBACK_ONLY),
        "guard_refusal": (f"127.0.0.1:{listener.port}", []),
    }


def test_mcp_discovery_answers_the_same_whatever_the_cause(
    world: World, listener: Listener, fake_dns: FakeDns, caplog: pytest.LogCaptureFixture
) -> None:
    client = writer(world.tenant_a)
    server_id = register_server(client, "streamable_http", "https://127.0.0.1:1/mcp")
    answers: dict[str, Any] = {}
    caplog.set_level(logging.WARNING, logger="warden.egress")
    cases = {
        **{
            cause: (f"http://{where}/mcp", allow)
            for cause, (where, allow) in targets(listener).items()
        },
        "tls_failure": (f"https://127.0.0.1:{listener.port}/mcp", LOOPBACK_ONLY),
    }
    for cause, (url, allow) in cases.items():
        patched = client.patch(f"/api/v1/mcp-servers/{server_id}", {"url": url}, format="json")
        assert patched.status_code == 200, patched.json()
        with override_settings(WARDEN_EGRESS_ALLOW=allow):
            status, body = discover(client, server_id)
        shown = client.get(f"/api/v1/mcp-servers/{server_id}").json()
        answers[cause] = (status, body, shown["status"], shown["last_error"])

    assert listener.count() >= 1  # the garbage listener and the TLS case were really reached
    distinct = {repr(answer) for answer in answers.values()}
    assert len(distinct) == 1, answers
    status, body, _, last_error = answers["guard_refusal"]
    assert (status, body["code"], body["details"]) == (
        502,
        "discovery_failed",
        {"reason": "connect_failed"},
    )
    for word in ("redis", "postgres", "refused", "loopback", "ERR", "ssl", "resolve"):
        assert word.lower() not in (body["message"] + last_error).lower()
    # The operator can tell the cases apart.
    log = caplog.text
    assert "Connection refused" in log or "ConnectError" in log
    assert "refused: loopback" in log
    assert "does not resolve" in log


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_model_calls_fail_the_same_whatever_the_cause(
    world: World,
    listener: Listener,
    fake_dns: FakeDns,
    provider: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="warden.egress")
    messages: dict[str, tuple[str, str]] = {}
    for cause, (where, allow) in targets(listener).items():
        with override_settings(WARDEN_EGRESS_ALLOW=allow):
            router = model_router(world.tenant_a, provider=provider, base_url=f"http://{where}/v1")
            failure = ask(router)
        (attempt,) = failure.attempts  # type: ignore[attr-defined]
        # The endpoint's name is the tenant's own; what follows it must not vary.
        messages[cause] = (attempt.error.code, str(attempt.error).split(": ", 1)[1])
        ModelEndpoint.objects.filter(tenant=world.tenant_a).delete()

    assert listener.count() >= 1
    assert set(messages.values()) == {("endpoint_unreachable", "cannot connect to the endpoint")}
    assert "refused: loopback" in caplog.text


def test_http_fetch_fails_the_same_whatever_the_cause(
    world: World, listener: Listener, fake_dns: FakeDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = targets(listener)
    monkeypatch.setattr(builtins, "_loaded", False)
    hosts = [where for where, _ in cases.values()]
    with override_settings(WARDEN_HTTP_FETCH_ALLOWED_HOSTS=hosts):
        registry = builtins.load_builtins(BuiltinRegistry())
    executor = GuardedExecutor(
        {"builtin": BuiltinExecutor(registry)},
        sleep=lambda _: None,
        breakers=CircuitBreakers(fail_max=1000, reset_timeout_s=1),
    )
    ctx = CallContext(tenant_id="t", session_id="s", turn_id="t", idempotency_key="k")
    fetch = registry.get("http_fetch").definition()
    answers: dict[str, tuple[Any, ...]] = {}
    for cause, (where, allow) in cases.items():
        with override_settings(WARDEN_EGRESS_ALLOW=allow):
            outcome = executor.execute(fetch, {"url": f"http://{where}/"}, ctx=ctx)
        host = where.rsplit(":", 1)[0]
        answers[cause] = (
            outcome.ok,
            outcome.error_code,
            outcome.error_message.replace(host, "<host>") if outcome.error_message else None,
        )

    assert listener.count() >= 1
    assert set(answers.values()) == {(False, "connect_failed", "cannot connect to <host>")}, answers
