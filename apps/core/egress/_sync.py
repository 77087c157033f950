"""The sync network backend, written once for both copies of httpcore (httpcore, httpcore2)."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from .policy import EgressPolicy, EgressRefused


def connect_tcp(
    core: ModuleType,
    policy: EgressPolicy,
    inner: Any,
    host: str,
    port: int,
    timeout: float | None,
    local_address: str | None,
    socket_options: Iterable[Any] | None,
) -> Any:
    """Resolve and check `host` once, then connect `inner` (a SyncBackend) to a checked
    address; `core` is the httpcore module whose ConnectError the caller expects."""
    try:
        addresses = policy.check(host, port)
    except EgressRefused as exc:
        raise core.ConnectError(str(exc)) from exc
    last: Exception | None = None
    for address in addresses:
        try:
            return inner.connect_tcp(
                address,
                port,
                timeout=timeout,
                local_address=local_address,
                socket_options=socket_options,
            )
        except core.ConnectError as exc:
            last = exc
    assert last is not None
    raise last
