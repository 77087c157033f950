"""Async TCP sockets connected only to addresses the policy checked (for clients that take a
ready socket, such as `websockets`)."""

from __future__ import annotations

import asyncio
import socket

from .policy import EgressPolicy


async def connect_checked(policy: EgressPolicy, host: str, port: int) -> socket.socket:
    """A connected, non-blocking TCP socket to a checked address of `host`.

    Resolution runs in a thread (getaddrinfo blocks); the connect goes to the exact address
    that was checked, so a second DNS answer is never asked for.
    """
    loop = asyncio.get_running_loop()
    addresses = await loop.run_in_executor(None, policy.check, host, port)
    last: OSError | None = None
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (address, port))
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    assert last is not None
    raise last
