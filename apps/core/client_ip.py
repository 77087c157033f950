"""The client's address, as the platform's throttles, lockouts and /metrics see it.

REMOTE_ADDR is the only address a client cannot forge. Behind a reverse proxy every
request comes from the proxy, so the operator names the proxies they run
(`WARDEN_TRUSTED_PROXIES`, addresses or CIDRs) and we read `X-Forwarded-For` from the
right: each trusted proxy appends the address it saw, so the right-most hop that is
not one of ours is the client. Anything left of it was written by the client and is
ignored — a forged header can't pick someone else's throttle bucket.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from rest_framework.request import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    if address is None:
        return False
    networks = _networks(tuple(getattr(settings, "WARDEN_TRUSTED_PROXIES", ())))
    return any(address in net for net in networks)


def client_ip(request: HttpRequest | Request) -> str:
    """The address of the client that sent `request` (a string; "" if unknown)."""
    return client_ip_from(
        remote=str(request.META.get("REMOTE_ADDR") or ""),
        forwarded_for=str(request.META.get("HTTP_X_FORWARDED_FOR", "")),
    )


def client_ip_from_scope(scope: Mapping[str, Any]) -> str:
    """The same for an ASGI connection (websocket handshakes): `scope["client"]` and its
    X-Forwarded-For header."""
    client = scope.get("client") or ("", 0)
    headers = dict(scope.get("headers") or [])
    return client_ip_from(
        remote=str(client[0] or ""),
        forwarded_for=headers.get(b"x-forwarded-for", b"").decode("latin-1"),
    )


def client_ip_from(*, remote: str, forwarded_for: str) -> str:
    peer = _parse(remote)
    if not _trusted(peer):
        return str(peer) if peer is not None else remote
    hops = [h for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            # Our proxy wrote something unreadable: don't trust anything left of it.
            break
        if not _trusted(address):
            return str(address)
    return str(peer)


def is_loopback(address: str) -> bool:
    parsed = _parse(address)
    return parsed is not None and parsed.is_loopback
