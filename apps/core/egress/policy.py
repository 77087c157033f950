"""Which addresses an outbound connection made for a tenant may reach.

An `EgressPolicy` resolves a host once, checks every address the answer holds, and hands back
only checked addresses: the caller connects to one of those, never to the host name again, so a
DNS answer that changes between the check and the connect (rebinding) cannot slip through.

Refused, unless the platform operator allows the host, host:port or CIDR: loopback, private
(RFC 1918, ULA), link-local (with the cloud metadata address), multicast, unspecified, shared
(CGNAT), benchmark, documentation and reserved ranges, and IPv6 forms that carry a refused IPv4
address (IPv4-mapped, IPv4-compatible, NAT64, 6to4). What is left is public unicast.

IPv4 literals in any notation (0x7f000001, 2130706433, 0177.0.0.1, 127.1) and IPv6 literals
need no special parsing: they go through the resolver like names, which normalises them.

Framework-free: the Django glue (adapters.py) builds the platform's policy from settings.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

logger = logging.getLogger("warden.egress")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Checked in order; the first match names the reason (what the operator log says).
_V4_REFUSED: tuple[tuple[IPNetwork, str], ...] = (
    (_V4("0.0.0.0/8"), "unspecified"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "shared"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link_local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "reserved"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "reserved"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmark"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),  # with 255.255.255.255
)
_V6_REFUSED: tuple[tuple[IPNetwork, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("::/96"), "ipv4_compatible"),  # deprecated; no reason to reach it
    (_V6("64:ff9b:1::/48"), "private"),  # local-use NAT64
    (_V6("100::/64"), "reserved"),  # discard-only
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("2001::/23"), "reserved"),  # IETF protocol assignments: Teredo, benchmarking, ...
    (_V6("3fff::/20"), "documentation"),
    (_V6("fc00::/7"), "private"),
    (_V6("fe80::/10"), "link_local"),
    (_V6("fec0::/10"), "private"),  # deprecated site-local
    (_V6("ff00::/8"), "multicast"),
)
_V6_GLOBAL_UNICAST = _V6("2000::/3")
_V6_MAPPED = _V6("::ffff:0:0/96")
_V6_NAT64 = _V6("64:ff9b::/96")
_V6_6TO4 = _V6("2002::/16")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), if any."""
    if ip in _V6_MAPPED:
        return ip.ipv4_mapped
    if ip in _V6_NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _V6_6TO4:
        return ip.sixtofour
    return None


def refused_reason(ip: IPAddress) -> str | None:
    """Why an outbound connection to `ip` is refused by default, or None (public unicast)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            reason = refused_reason(inner)
            return f"ipv4_embedded_{reason}" if reason else None
        if ip.scope_id:
            ip = ipaddress.IPv6Address(int(ip))
        for network, reason in _V6_REFUSED:
            if ip in network:
                return reason
        return None if ip in _V6_GLOBAL_UNICAST else "reserved"
    for network, reason in _V4_REFUSED:
        if ip in network:
            return reason
    return None


def system_resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (numeric literals in any notation normalise here)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class EgressRefused(OSError):
    """The guard refused an outbound connection. For the operator's log, never for a tenant:
    the reason and address tell what lies behind a host."""

    def __init__(self, host: str, port: int, reason: str, address: str | None = None) -> None:
        where = f" ({address})" if address else ""
        super().__init__(f"outbound connection to {host}:{port}{where} refused: {reason}")
        self.host, self.port, self.reason, self.address = host, port, reason, address


def normalise_host(host: str) -> str:
    return host.strip().strip("[]").lower().rstrip(".")


@dataclass(frozen=True)
class _HostRule:
    host: str
    port: int | None

    def matches(self, host: str, port: int) -> bool:
        return self.host == host and self.port in (None, port)


@dataclass(frozen=True)
class _NetworkRule:
    network: IPNetwork
    port: int | None

    def matches(self, ip: IPAddress, port: int) -> bool:
        if self.port not in (None, port):
            return False
        if ip.version == 6 and isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            ip = ipaddress.IPv6Address(int(ip))
        if ip in self.network:
            return True
        # An operator who allows 127.0.0.1 means the mapped form too.
        inner = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        return inner is not None and inner in self.network


def _parse_port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"egress allowlist entry {entry!r}: bad port {text!r}")
    return int(text)


def _parse_rule(entry: str) -> _HostRule | _NetworkRule:
    """ "host", "host:port", "ip", "ip:port", "[v6]:port", "v6", or a CIDR "10.0.0.0/8"."""
    text = entry.strip().lower()
    try:
        if "/" in text:
            return _NetworkRule(ipaddress.ip_network(text, strict=False), None)
        if text.startswith("["):
            inside, bracket, rest = text[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError("expected [v6] or [v6]:port")
            port = _parse_port(rest[1:], entry) if rest else None
            return _NetworkRule(ipaddress.ip_network(inside), port)
        if text.count(":") > 1:
            return _NetworkRule(ipaddress.ip_network(text), None)
        host, sep, port_text = text.partition(":")
        port = _parse_port(port_text, entry) if sep else None
    except ValueError as exc:
        raise ValueError(f"egress allowlist entry {entry!r} is not valid: {exc}") from None
    try:
        return _NetworkRule(ipaddress.ip_network(host), port)
    except ValueError:
        pass
    host = host.rstrip(".")
    if not host or not all(c.isalnum() or c in "-._" for c in host):
        raise ValueError(f"egress allowlist entry {entry!r} is not a host, host:port or CIDR")
    return _HostRule(host, port)


@dataclass(frozen=True)
class EgressPolicy:
    """The operator's allowlist, and the check every outbound connection goes through.

    `allow` entries: "models.internal" (any port), "127.0.0.1:8081", "[::1]:8080",
    "10.0.0.0/8". A host-name entry trusts whatever that name resolves to, so allow names the
    operator controls; address and CIDR entries match the resolved address, whatever the URL
    spelled. `resolver` is for callers that resolve differently; None means the system's.
    Equal policies compare equal (pooled connections are keyed by their config).
    """

    allow: tuple[str, ...] = ()
    resolver: Resolver | None = field(default=None, compare=False, repr=False)
    _hosts: tuple[_HostRule, ...] = field(init=False, compare=False, repr=False)
    _networks: tuple[_NetworkRule, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        allow = tuple(e.strip() for e in self.allow if e and e.strip())
        rules = [_parse_rule(entry) for entry in allow]
        object.__setattr__(self, "allow", allow)
        object.__setattr__(self, "_hosts", tuple(r for r in rules if isinstance(r, _HostRule)))
        object.__setattr__(
            self, "_networks", tuple(r for r in rules if isinstance(r, _NetworkRule))
        )

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> EgressPolicy:
        return cls(tuple(entries))

    def check(self, host: str, port: int) -> list[str]:
        """Resolve `host` once and return the addresses a connection may go to, in order.

        Raises EgressRefused (an OSError) when the name does not resolve, or when any address
        it resolves to is refused: one bad answer condemns the name, rather than letting the
        connection race between a public and a private address.
        """
        name = normalise_host(host)
        resolve = self.resolver or system_resolve
        try:
            answers = list(resolve(name, port))
        except (OSError, UnicodeError) as exc:
            logger.warning(
                "egress refused: %s:%s does not resolve (%s)",
                name,
                port,
                exc,
                extra={"egress_host": name, "egress_port": port, "egress_reason": "dns_failed"},
            )
            raise EgressRefused(name, port, "dns_failed") from None
        if not answers:
            raise EgressRefused(name, port, "no_address")
        trusted_name = any(rule.matches(name, port) for rule in self._hosts)
        allowed: list[str] = []
        for answer in answers:
            try:
                ip = ipaddress.ip_address(answer)
            except ValueError:
                raise EgressRefused(name, port, "unparsable_address", answer) from None
            if not trusted_name and not any(r.matches(ip, port) for r in self._networks):
                reason = refused_reason(ip)
                if reason is not None:
                    logger.warning(
                        "egress refused: %s:%s resolves to %s (%s)",
                        name,
                        port,
                        answer,
                        reason,
                        extra={
                            "egress_host": name,
                            "egress_port": port,
                            "egress_address": answer,
                            "egress_reason": reason,
                        },
                    )
                    raise EgressRefused(name, port, reason, answer)
            if answer not in allowed:
                allowed.append(answer)
        return allowed

    # -- connecting to a checked address ---------------------------------------------------

    def create_connection(self, host: str, port: int, timeout: float | None) -> socket.socket:
        """A blocking TCP socket connected to a checked address of `host`."""
        last: OSError | None = None
        for address in self.check(host, port):
            try:
                return socket.create_connection((address, port), timeout)
            except OSError as exc:
                last = exc
        assert last is not None
        raise last


# Fail closed: whoever forgets to pass the platform's policy gets one that allows nothing
# but public addresses.
STRICT = EgressPolicy()
