"""Private, link-local/metadata, multicast, reserved and IPv6-embedded addresses are refused by
the address check itself: a DNS stub answers them, and the tripwire in place of connect()
shows that no socket ever tried to reach them. No traffic leaves loopback.
"""

from __future__ import annotations

import ipaddress

import pytest
from django.test import override_settings

from apps.tools import builtins
from apps.tools.executors.base import CallContext
from apps.tools.executors.builtin import BuiltinExecutor, BuiltinRegistry
from apps.tools.executors.wrapper import CircuitBreakers, GuardedExecutor
from tests.conftest import World
from tests.security.egress_fixtures import (
    TRANSPORTS,
    FakeDns,
    Tripwire,
    ask_model,
    fake_dns_fixture,  # noqa: F401  (a fixture)
    mcp_url,
    probe,
    tripwire_fixture,  # noqa: F401  (a fixture)
    writer,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_egress_allowed")]

# name → what the stub answers for it
FORBIDDEN = {
    "metadata.test": "169.254.169.254",
    "ecs-metadata.test": "169.254.170.2",
    "rfc1918-10.test": "10.0.0.5",
    "rfc1918-172.test": "172.16.3.4",
    "rfc1918-192.test": "192.168.1.1",
    "cgnat.test": "100.64.0.1",
    "this-network.test": "0.0.0.0",
    "multicast.test": "224.0.0.251",
    "reserved.test": "240.0.0.1",
    "broadcast.test": "255.255.255.255",
    "benchmark.test": "198.18.0.1",
    "documentation.test": "192.0.2.10",
    "ietf.test": "192.0.0.170",
    "ula.test": "fd00::1",
    "linklocal6.test": "fe80::1",
    "metadata6.test": "fd00:ec2::254",
    "multicast6.test": "ff02::1",
    "unspecified6.test": "::",
    "mapped-loopback.test": "::ffff:127.0.0.1",
    "mapped-metadata.test": "::ffff:169.254.169.254",
    "compatible.test": "::10.0.0.1",
    "nat64-metadata.test": "64:ff9b::a9fe:a9fe",
    "sixtofour-private.test": "2002:c0a8:0101::1",
    "teredo.test": "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "documentation6.test": "2001:db8::1",
}


@pytest.fixture
def no_egress_allowed():  # type: ignore[no-untyped-def]
    with override_settings(WARDEN_EGRESS_ALLOW=[]):
        yield


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_mcp_discovery_refuses_forbidden_ranges_before_any_connect(
    world: World, fake_dns: FakeDns, tripwire: Tripwire, name: str
) -> None:
    fake_dns.set(name, [FORBIDDEN[name]])

    status, body = probe(writer(world.tenant_a), "streamable_http", f"http://{name}:80/mcp")

    assert tripwire.attempts == []
    assert fake_dns.asked(name) >= 1  # the guard looked at the address, then said no
    assert (status, body["details"]["reason"]) == (502, "connect_failed"), body


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_mcp_transport_refuses_the_metadata_address(
    world: World, fake_dns: FakeDns, tripwire: Tripwire, transport: str
) -> None:
    fake_dns.set("metadata.test", ["169.254.169.254"])

    status, body = probe(writer(world.tenant_a), transport, mcp_url(transport, "metadata.test", 80))

    assert tripwire.attempts == []
    assert (status, body["details"]["reason"]) == (502, "connect_failed"), body


@pytest.mark.parametrize("host", ["169.254.169.254", "[fd00:ec2::254]", "[::ffff:a9fe:a9fe]"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_metadata_literals_are_refused_before_any_connect(
    world: World, tripwire: Tripwire, transport: str, host: str
) -> None:
    status, body = probe(writer(world.tenant_a), transport, mcp_url(transport, host, 80))

    assert tripwire.attempts == []
    assert (status, body["details"]["reason"]) == (502, "connect_failed"), body


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("name", ["metadata.test", "rfc1918-10.test", "mapped-loopback.test"])
def test_model_endpoints_refuse_forbidden_ranges_before_any_connect(
    world: World, fake_dns: FakeDns, tripwire: Tripwire, provider: str, name: str
) -> None:
    fake_dns.set(name, [FORBIDDEN[name]])

    failure = ask_model(world.tenant_a, provider=provider, base_url=f"http://{name}/v1")

    assert tripwire.attempts == []
    assert failure.attempts[0].error.code == "endpoint_unreachable", failure


def test_http_fetch_refuses_forbidden_ranges_before_any_connect(
    world: World, fake_dns: FakeDns, tripwire: Tripwire, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, address in FORBIDDEN.items():
        fake_dns.set(name, [address])
    monkeypatch.setattr(builtins, "_loaded", False)
    with override_settings(WARDEN_HTTP_FETCH_ALLOWED_HOSTS=list(FORBIDDEN)):
        registry = builtins.load_builtins(BuiltinRegistry())
    executor = GuardedExecutor(
        {"builtin": BuiltinExecutor(registry)},
        sleep=lambda _: None,
        breakers=CircuitBreakers(fail_max=1000, reset_timeout_s=1),
    )
    ctx = CallContext(tenant_id="t", session_id="s", turn_id="t", idempotency_key="k")
    fetch = registry.get("http_fetch").definition()

    codes = {
        executor.execute(fetch, {"url": f"http://{name}/latest/meta-data/"}, ctx=ctx).error_code
        for name in FORBIDDEN
    }

    assert tripwire.attempts == []
    assert codes == {"connect_failed"}


def test_a_name_with_one_forbidden_answer_among_public_ones_is_refused(
    world: World, fake_dns: FakeDns, tripwire: Tripwire
) -> None:
    # A public answer must not carry a private one in with it.
    fake_dns.set("mixed.test", ["8.8.8.8", "10.0.0.5"])

    status, body = probe(writer(world.tenant_a), "streamable_http", "http://mixed.test/mcp")

    assert tripwire.attempts == []
    assert (status, body["details"]["reason"]) == (502, "connect_failed"), body


def test_the_table_covers_each_class_and_leaves_public_addresses_alone() -> None:
    from apps.core.egress import refused_reason

    reasons = {name: refused_reason(ipaddress.ip_address(a)) for name, a in FORBIDDEN.items()}
    assert all(reasons.values()), reasons
    assert reasons["metadata.test"] == "link_local"
    assert reasons["mapped-loopback.test"] == "ipv4_embedded_loopback"
    assert reasons["nat64-metadata.test"] == "ipv4_embedded_link_local"
    public = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
    for address in public:
        assert refused_reason(ipaddress.ip_address(address)) is None, address
