"""Reads for MCP servers and the catalog. Every one takes the tenant."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.db.models import QuerySet

from apps.tenants.models import Tenant
from apps.tools.models import McpServer, Tool


def mcp_server_list(*, tenant: Tenant) -> QuerySet[McpServer]:
    return McpServer.objects.filter(tenant=tenant).order_by("name")


def mcp_server_get(*, tenant: Tenant, server_id: uuid.UUID) -> McpServer:
    return mcp_server_list(tenant=tenant).get(id=server_id)


def mcp_server_get_by_name(*, tenant: Tenant, name: str) -> McpServer:
    return mcp_server_list(tenant=tenant).get(name=name)


def tool_list(
    *,
    tenant: Tenant,
    source: str | None = None,
    server: McpServer | None = None,
    enabled: bool | None = None,
) -> QuerySet[Tool]:
    qs = Tool.objects.filter(tenant=tenant).select_related("server").order_by("name")
    if source:
        qs = qs.filter(source=source)
    if server is not None:
        qs = qs.filter(server=server)
    if enabled is not None:
        qs = qs.filter(enabled=enabled)
    return qs


def tool_get(*, tenant: Tenant, tool_id: uuid.UUID) -> Tool:
    return tool_list(tenant=tenant).get(id=tool_id)


def tool_get_by_name(*, tenant: Tenant, name: str) -> Tool:
    return tool_list(tenant=tenant).get(name=name)


def tools_by_name(*, tenant_id: uuid.UUID, names: Iterable[str]) -> dict[str, Tool]:
    """Catalog rows for `names` (an agent's allowed tools), with their servers."""
    rows = Tool.objects.filter(tenant_id=tenant_id, name__in=list(names)).select_related("server")
    return {row.name: row for row in rows}
