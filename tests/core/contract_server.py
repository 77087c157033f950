"""daphne for the OpenAPI contract test, able to reach loopback only.

`python -m tests.core.contract_server <daphne arguments>`. Schemathesis fills every field with
what it likes, URLs too, and `POST /mcp-servers/<id>/discover` then connects to them. The
platform's egress guard refuses private and loopback addresses but lets public ones through,
and resolving a name may already ask a DNS server elsewhere. Tests send traffic to loopback
only, so in this process a name other than `localhost` does not resolve and a connection to
any other address fails before a packet leaves: the guard's callers see an unreachable host,
as they would for a dead one.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return ip.is_loopback and not (isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or name.lower().rstrip(".") == "localhost" or _is_ip_literal(str(name)):
        return _real_getaddrinfo(host, port, *args, **kwargs)
    raise socket.gaierror(socket.EAI_NONAME, "contract test: only loopback is reachable")


def _refuse_elsewhere(sock: socket.socket, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(str(address[0])):
        raise ConnectionRefusedError(111, "contract test: only loopback is reachable")


def connect(self: socket.socket, address: Any) -> None:
    _refuse_elsewhere(self, address)
    _real_connect(self, address)


def connect_ex(self: socket.socket, address: Any) -> int:
    _refuse_elsewhere(self, address)
    return _real_connect_ex(self, address)


def main() -> None:
    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
