"""httpx2 transports whose every TCP connection goes through the egress check.

httpx2/httpcore2 are a separate copy of httpx/httpcore with their own classes: the `mcp` SDK
uses the async side, the `openai` and `anthropic` SDKs the sync side. As in httpx_guard.py the
check sits in the network backend, so redirects and pooled connections are covered and TLS is
still verified against the URL's host name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import anyio
import httpcore2
import httpx2

from . import _sync
from .policy import EgressPolicy, EgressRefused

_LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=20)


def _pool_options(backend: Any) -> dict[str, Any]:
    """What httpx2 would give its own pool, with our network backend instead of its own."""
    return {
        "ssl_context": httpx2.create_ssl_context(),
        "max_connections": _LIMITS.max_connections,
        "max_keepalive_connections": _LIMITS.max_keepalive_connections,
        "keepalive_expiry": _LIMITS.keepalive_expiry,
        "network_backend": backend,
    }


class GuardedBackend(httpcore2.NetworkBackend):
    """httpcore2's sync backend, connecting only to addresses the policy checked."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        stream: httpcore2.NetworkStream = _sync.connect_tcp(
            httpcore2, self._policy, self._inner, host, port, timeout, local_address, socket_options
        )
        return stream

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        raise httpcore2.ConnectError("unix sockets are not reachable through the egress guard")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedAsyncBackend(httpcore2.AsyncNetworkBackend):
    """httpcore2's async backend, connecting only to addresses the policy checked."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            # getaddrinfo blocks: resolve in a thread, off the event loop.
            addresses = await anyio.to_thread.run_sync(self._policy.check, host, port)
        except EgressRefused as exc:
            raise httpcore2.ConnectError(str(exc)) from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore2.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("unix sockets are not reachable through the egress guard")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx2.HTTPTransport):
    """`httpx2.HTTPTransport` over `GuardedBackend`; never a proxy, never a unix socket."""

    def __init__(self, policy: EgressPolicy) -> None:
        super().__init__(limits=_LIMITS)
        # The pool httpx2 built is replaced by the same pool on the guarded backend (there is
        # no public way to pass a network backend).
        self._pool = httpcore2.ConnectionPool(**_pool_options(GuardedBackend(policy)))


class GuardedAsyncTransport(httpx2.AsyncHTTPTransport):
    """`httpx2.AsyncHTTPTransport` over `GuardedAsyncBackend`; never a proxy."""

    def __init__(self, policy: EgressPolicy) -> None:
        super().__init__(limits=_LIMITS)
        self._pool = httpcore2.AsyncConnectionPool(**_pool_options(GuardedAsyncBackend(policy)))
