"""httpx clients whose every TCP connection goes through the egress check (`http_fetch`).

The check sits in httpcore's network backend, below redirects and connection pooling, so every
hop and every new connection is checked, and httpcore still verifies TLS against the URL's host
name (SNI and the certificate come from the request, not from the address connected to).
The model SDKs use httpx2, a separate copy of httpx: see httpx2_guard.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from . import _sync
from .policy import EgressPolicy


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, connecting only to addresses the policy checked."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream: httpcore.NetworkStream = _sync.connect_tcp(
            httpcore, self._policy, self._inner, host, port, timeout, local_address, socket_options
        )
        return stream

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not reachable through the egress guard")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """`httpx.HTTPTransport` over `GuardedBackend`; never a proxy, never a unix socket."""

    def __init__(self, policy: EgressPolicy) -> None:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        super().__init__(limits=limits)
        # The pool httpx built is replaced by the same pool on the guarded backend (httpx
        # has no public way to pass a network backend).
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )


def guarded_client(policy: EgressPolicy, **kwargs: Any) -> httpx.Client:
    """An `httpx.Client` that ignores proxy environment variables and checks every connect."""
    return httpx.Client(transport=GuardedTransport(policy), trust_env=False, **kwargs)
