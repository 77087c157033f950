"""The egress guard: where outbound connections made for a tenant may go (SSRF defence).

    policy = EgressPolicy(("10.1.2.3:8443", "models.internal"))   # the operator's allowlist
    client = guarded_client(policy)                                 # httpx, see httpx_guard.py
    transport = GuardedAsyncTransport(policy)                       # httpx2, see httpx2_guard.py
    sock = await connect_checked(policy, host, port)                # a raw socket (websockets)

The check runs where the socket connects, after DNS resolution, on the address connected to.
Framework-free; `adapters.platform_egress_policy()` is the Django glue that reads the settings.
This package imports neither httpx flavour: import the submodule that fits the client.
"""

from .policy import STRICT, EgressPolicy, EgressRefused, refused_reason

__all__ = ["STRICT", "EgressPolicy", "EgressRefused", "refused_reason"]
