"""Outbound connections made for tenants (MCP servers, model endpoints, http_fetch)."""

from __future__ import annotations

from config.env import env_list

# Comma-separated hosts, host:port pairs and CIDRs that outbound connections made for a tenant
# may reach although they resolve to loopback, private, link-local, multicast or reserved
# addresses, e.g. "127.0.0.1:8081,models.internal,10.20.0.0/16". Empty: public addresses only.
# A host name entry trusts whatever that name resolves to.
WARDEN_EGRESS_ALLOW = env_list("WARDEN_EGRESS_ALLOW", [])
