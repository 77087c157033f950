"""What the egress tests need: a listener that records connections, a DNS stub, a tripwire.

Traffic rule: these tests only ever connect to loopback. Anything else a test makes a name
resolve to (private, link-local, metadata, multicast, public, ...) is answered by the DNS stub
and would be caught by the tripwire, which stands in for `connect()` on every non-loopback
address: it records the attempt and fails it before any packet is sent.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.llm.services import endpoint_save, router_for_tenant
from apps.llm.types import Message, ModelRequest, ProviderError
from apps.tenants.models import Tenant
from tests.conftest import client_for

# How loopback is written in the URLs a hostile tenant tries (all reach 127.0.0.1 or ::1).
LOOPBACK_SPELLINGS = ["127.0.0.1", "localhost", "[::1]", "0x7f000001", "2130706433", "127.1"]
GARBAGE = b"-ERR this is not the service you are looking for (redis 7.2, pid 4242)\r\n"

_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return ip.is_loopback and not (isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped)


class Listener:
    """A plain TCP accept loop on 127.0.0.1 and ::1 (one port): records every connection and
    answers it with garbage, like a service that is not what the client expects."""

    def __init__(self) -> None:
        self.connections: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        for _ in range(20):
            v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            v4.bind(("127.0.0.1", 0))
            port = v4.getsockname()[1]
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            try:
                v6.bind(("::1", port))
            except OSError:
                v4.close()
                v6.close()
                continue
            self.port = port
            self._socks = [v4, v6]
            break
        else:
            raise RuntimeError("no port free on both 127.0.0.1 and ::1")
        for sock in self._socks:
            sock.listen(16)
            sock.setblocking(False)  # two threads may race for one pending connection
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _accept_ready(self, timeout: float) -> None:
        ready, _, _ = select.select(self._socks, [], [], timeout)
        for sock in ready:
            with self._lock:
                try:
                    conn, peer = sock.accept()
                except OSError:
                    continue
                self.connections.append((peer[0], peer[1]))
            try:
                conn.sendall(GARBAGE)
            except OSError:
                pass
            conn.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                self._accept_ready(0.05)
            except (OSError, ValueError):
                return

    def count(self) -> int:
        """Connections so far. A connection is in the backlog once the client's connect()
        returned, so taking what is pending here leaves no race with the accept thread."""
        self._accept_ready(0)
        with self._lock:
            return len(self.connections)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self._socks:
            sock.close()


@pytest.fixture(name="listener")
def listener_fixture() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FakeDns:
    """Answers for names under `.test` (a TLD that never resolves for real); every other name
    goes to the real resolver. An entry is a list of answers, one per query in turn (the last
    one repeats), each a list of addresses."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, name: str, *answers: Sequence[str]) -> None:
        self.answers[name] = [list(a) for a in answers]

    def asked(self, name: str) -> int:
        return self.queries.count(name)

    def getaddrinfo(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[tuple[Any, ...]]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.lower().rstrip(".").endswith(".test"):
            return _real_getaddrinfo(host, port, family, type, proto, flags)
        with self._lock:
            self.queries.append(name)
            queue = self.answers.get(name)
            if not queue:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        results: list[tuple[Any, ...]] = []
        for address in addresses:
            if ":" in address:
                results.append(
                    (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port or 0), 0, 0))
                )
            else:
                results.append(
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))
                )
        return results


@pytest.fixture(name="fake_dns")
def fake_dns_fixture(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    dns = FakeDns()
    monkeypatch.setattr(socket, "getaddrinfo", dns.getaddrinfo)
    return dns


@dataclass
class Tripwire:
    """Every connect() to a non-loopback address, refused before it reaches the kernel."""

    attempts: list[Any] = field(default_factory=list)


@pytest.fixture(name="tripwire")
def tripwire_fixture(monkeypatch: pytest.MonkeyPatch) -> Tripwire:
    wire = Tripwire()

    def guard(address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else str(address)
        if not is_loopback(str(host)):
            wire.attempts.append(address)
            raise ConnectionRefusedError(111, f"tripwire: connect to {address!r} stopped")

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            guard(address)
        return _real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            guard(address)
        return _real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return wire


# --------------------------------------------------------------------------- through the API

TRANSPORTS = ["streamable_http", "sse", "websocket"]


def mcp_url(transport: str, host: str, port: int) -> str:
    if transport == "websocket":
        return f"ws://{host}:{port}/"
    return f"http://{host}:{port}/{'sse' if transport == 'sse' else 'mcp'}"


def writer(tenant: Tenant) -> APIClient:
    """A tenant's write-scoped API key: what a hostile tenant has."""
    return client_for(tenant, scopes=["write"])


def register_server(client: APIClient, transport: str, url: str) -> str:
    response = client.post(
        "/api/v1/mcp-servers",
        {
            "name": f"probe-{uuid.uuid4().hex[:8]}",
            "transport": transport,
            "url": url,
            "auth_header": "Authorization",
            "auth_secret": "tenant-secret-token",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    return str(response.json()["id"])


def discover(client: APIClient, server_id: str) -> tuple[int, dict[str, Any]]:
    response = client.post(f"/api/v1/mcp-servers/{server_id}/discover", {}, format="json")
    return response.status_code, response.json()


def probe(client: APIClient, transport: str, url: str) -> tuple[int, dict[str, Any]]:
    """Register a server at `url` and ask for discovery, as a tenant would."""
    return discover(client, register_server(client, transport, url))


PRICES = {"price_input_per_mtok": Decimal("0.15"), "price_output_per_mtok": Decimal("0.60")}


def model_router(tenant: Tenant, *, provider: str, base_url: str) -> Any:
    """The tenant's router, with one endpoint of `provider` at `base_url`."""
    endpoint_save(
        tenant=tenant,
        name=f"probe-{uuid.uuid4().hex[:8]}",
        provider=provider,
        model="probe-model",
        base_url=base_url,
        api_key="sk-tenant-secret",
        timeout_s=10.0,
        # Priced (or the router would refuse it before any connection) unless it is free.
        **({} if provider in ("local", "scripted") else PRICES),
    )
    return router_for_tenant(tenant_id=tenant.id)


def ask(router: Any) -> ProviderError:
    """Route one request; returns what the router raised (a tenant sees its message as the
    failure detail of the turn)."""
    try:
        router.complete(
            ModelRequest(messages=(Message("user", "hello"),), timeout_s=10.0),
            tier="small",
            sensitivity="public",
        )
    except ProviderError as exc:
        return exc
    raise AssertionError("the model endpoint answered")


def ask_model(tenant: Tenant, *, provider: str, base_url: str) -> Any:
    """Register a model endpoint at `base_url` and route one request to it."""
    return ask(model_router(tenant, provider=provider, base_url=base_url))
