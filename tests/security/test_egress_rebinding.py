"""DNS rebinding: a name that answers one thing, then another. The guard asks once per
connection and connects to the address it checked, so a changing answer cannot carry the
connection to loopback. The stub answers a TEST-NET address where a public one would be, so
that nothing ever leaves the machine: the tripwire stands in for connect() to it.
"""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.conftest import World
from tests.security.egress_fixtures import (
    TRANSPORTS,
    FakeDns,
    Listener,
    Tripwire,
    ask,
    discover,
    fake_dns_fixture,  # noqa: F401  (a fixture)
    listener_fixture,  # noqa: F401  (a fixture)
    mcp_url,
    model_router,
    probe,
    register_server,
    tripwire_fixture,  # noqa: F401  (a fixture)
    writer,
)

pytestmark = pytest.mark.django_db
PUBLIC = "203.0.113.7"  # stands for a public address; documentation range, never routed


@pytest.mark.parametrize("order", ["public_then_loopback", "loopback_then_public"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rebinding_name_never_reaches_loopback_nor_the_first_answer(
    world: World,
    fake_dns: FakeDns,
    tripwire: Tripwire,
    listener: Listener,
    transport: str,
    order: str,
) -> None:
    answers = [[PUBLIC], ["127.0.0.1"]]
    if order == "loopback_then_public":
        answers.reverse()
    fake_dns.set("rebind.test", *answers)

    with override_settings(WARDEN_EGRESS_ALLOW=[]):
        status, body = probe(
            writer(world.tenant_a), transport, mcp_url(transport, "rebind.test", listener.port)
        )

    assert listener.count() == 0
    assert tripwire.attempts == []
    assert (status, body["details"]["reason"]) == (502, "connect_failed"), body


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_allowed_name_that_rebinds_to_loopback_is_refused_on_the_next_connection(
    world: World,
    fake_dns: FakeDns,
    tripwire: Tripwire,
    listener: Listener,
    transport: str,
) -> None:
    # The operator allows PUBLIC (say, a partner's server). The name answers PUBLIC first,
    # then loopback. The first connection goes to the very address that was checked (the
    # tripwire stops it before any packet); the next one is checked afresh and refused.
    fake_dns.set("rebind.test", [PUBLIC], ["127.0.0.1"])
    client = writer(world.tenant_a)

    with override_settings(WARDEN_EGRESS_ALLOW=[PUBLIC]):
        server_id = register_server(
            client, transport, mcp_url(transport, "rebind.test", listener.port)
        )
        first = discover(client, server_id)
        second = discover(client, server_id)

    assert listener.count() == 0
    assert {attempt[0] for attempt in tripwire.attempts} == {PUBLIC}
    assert fake_dns.asked("rebind.test") == len(tripwire.attempts) + 1  # one lookup a connect
    assert first == second
    assert (first[0], first[1]["details"]["reason"]) == (502, "connect_failed"), first


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_model_endpoint_that_rebinds_to_loopback_is_refused_on_the_next_connection(
    world: World,
    fake_dns: FakeDns,
    tripwire: Tripwire,
    listener: Listener,
    provider: str,
) -> None:
    fake_dns.set("rebind.test", [PUBLIC], ["127.0.0.1"])
    url = f"http://rebind.test:{listener.port}/v1"

    with override_settings(WARDEN_EGRESS_ALLOW=[PUBLIC]):
        router = model_router(world.tenant_a, provider=provider, base_url=url)
        first, second = ask(router), ask(router)

    assert listener.count() == 0
    assert {attempt[0] for attempt in tripwire.attempts} == {PUBLIC}
    assert str(first) == str(second)
    assert second.attempts[0].error.code == "endpoint_unreachable", second
