"""What the platform operator allows still works, and only that: a host:port, a host name or a
CIDR in WARDEN_EGRESS_ALLOW lets a real loopback MCP server or model server through, while
its neighbours stay refused. Proxy variables in the environment do not route around the guard.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from apps.llm.types import Message, ModelRequest
from tests.conftest import World
from tests.llm.servers import FakeModelServer, completion, reply
from tests.security.egress_fixtures import (
    Listener,
    ask,
    listener_fixture,  # noqa: F401  (a fixture)
    mcp_url,
    model_router,
    probe,
    writer,
)
from tests.tools.conftest import RunningServer, start_server

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[RunningServer]:
    server = start_server("streamable-http")
    yield server
    server.stop()


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    server = FakeModelServer(default=reply(completion("hello from the allowed model"))).start()
    yield server
    server.stop()


def allow_cases(port: int, other_port: int) -> list[tuple[list[str], str, str]]:
    """(allowlist, host that must pass, URL host:port that must stay refused)."""
    return [
        ([f"127.0.0.1:{port}"], f"127.0.0.1:{port}", f"127.0.0.1:{other_port}"),
        (["127.0.0.0/8"], f"127.0.0.1:{port}", f"[::1]:{other_port}"),
        ([f"localhost:{port}"], f"localhost:{port}", f"127.0.0.1:{port}"),
    ]


@pytest.mark.parametrize("case", range(3))
def test_an_allowed_mcp_server_is_discovered_and_its_neighbours_stay_refused(
    world: World, mcp_server: RunningServer, listener: Listener, case: int
) -> None:
    allow, passes, refused = allow_cases(mcp_server.port, listener.port)[case]
    client = writer(world.tenant_a)

    with override_settings(WARDEN_EGRESS_ALLOW=allow):
        ok_status, ok_body = probe(client, "streamable_http", f"http://{passes}/mcp")
        bad_status, bad_body = probe(client, "streamable_http", f"http://{refused}/mcp")

    assert ok_status == 200, ok_body
    assert "add" in ok_body["result"]["created"]
    assert listener.count() == 0
    assert (bad_status, bad_body["details"]["reason"]) == (502, "connect_failed")


@pytest.mark.parametrize("transport", ["sse", "websocket"])
def test_allowed_sse_and_websocket_servers_work(
    world: World, listener: Listener, transport: str
) -> None:
    server = start_server(transport)
    try:
        with override_settings(WARDEN_EGRESS_ALLOW=[f"127.0.0.1:{server.port}"]):
            status, body = probe(
                writer(world.tenant_a), transport, mcp_url(transport, "127.0.0.1", server.port)
            )
            refused, _ = probe(
                writer(world.tenant_a), transport, mcp_url(transport, "127.0.0.1", listener.port)
            )
    finally:
        server.stop()
    assert status == 200, body
    assert refused == 502
    assert listener.count() == 0


def test_an_allowed_model_endpoint_answers_and_its_neighbours_stay_refused(
    world: World, model_server: FakeModelServer, listener: Listener
) -> None:
    with override_settings(WARDEN_EGRESS_ALLOW=[f"127.0.0.1:{model_server.port}"]):
        router = model_router(world.tenant_a, provider="openai", base_url=model_server.url)
        answer = router.complete(
            ModelRequest(messages=(Message("user", "hi"),)), tier="small", sensitivity="public"
        )
        refused = ask(
            model_router(
                world.tenant_b, provider="openai", base_url=f"http://127.0.0.1:{listener.port}/v1"
            )
        )

    assert answer.text == "hello from the allowed model"
    assert listener.count() == 0
    assert refused.attempts[0].error.code == "endpoint_unreachable"  # type: ignore[attr-defined]


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "ALL_PROXY", "http_proxy"])
def test_proxy_variables_do_not_route_around_the_guard(
    world: World,
    mcp_server: RunningServer,
    model_server: FakeModelServer,
    listener: Listener,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    # A proxy from the environment would see (and could redirect) every request, and would
    # be the only address the guard checked. The listener plays that proxy.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, f"http://127.0.0.1:{listener.port}")
    allow = [f"127.0.0.1:{mcp_server.port}", f"127.0.0.1:{model_server.port}"]

    with override_settings(WARDEN_EGRESS_ALLOW=allow):
        status, body = probe(
            writer(world.tenant_a), "streamable_http", f"http://127.0.0.1:{mcp_server.port}/mcp"
        )
        router = model_router(world.tenant_a, provider="openai", base_url=model_server.url)
        answer = router.complete(
            ModelRequest(messages=(Message("user", "hi"),)), tier="small", sensitivity="public"
        )

    assert listener.count() == 0
    assert status == 200, body
    assert answer.text == "hello from the allowed model"
