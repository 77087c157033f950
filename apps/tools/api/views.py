"""MCP servers and the tool catalog. Members read; operators, admins and owners change.

A stdio server names a template the platform operator defines (`GET mcp-server-templates`) and
gives only the arguments and env variables that template declares. `args` and `env` values are
shown to owners and admins (and admin-scoped keys) only; others see `[redacted]` values.

Discovery of a stdio server runs on a worker (stdio servers never start in a web process); the
request waits for it and answers 503 `discovery_unavailable` when no worker took it or finished
in time. A network server is discovered in the request, through the egress guard.

Discovery that cannot get a usable tool list from the server (unreachable, timed out,
malformed list) answers 502 with code `discovery_failed` and `details.reason` (the executor's
code: connect_failed, connect_timeout, timeout, discovery_invalid, …): the request was fine,
the upstream MCP server was not. The catalog is unchanged and the server's status says why.
"""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api.errors import error_body
from apps.core.api.schema import error_responses
from apps.core.api.views import (
    PaginatedListMixin,
    authenticated_user,
    bool_query_param,
    get_or_404,
    paginated,
)
from apps.tenants.permissions import (
    IsTenantAdmin,
    IsTenantMember,
    IsTenantOperatorForWrites,
    request_identity,
)
from apps.tools import selectors, services
from apps.tools.api.serializers import (
    DiscoverInputSerializer,
    DiscoverResponseSerializer,
    McpServerInputSerializer,
    McpServerSerializer,
    StdioTemplateSerializer,
    ToolSerializer,
    ToolUpdateSerializer,
)
from apps.tools.exceptions import DiscoveryFailed
from apps.tools.models import McpServer, Tool, ToolSource
from apps.tools.stdio import stdio_templates


def _server(request: Request, server_id: uuid.UUID) -> McpServer:
    tenant = request_identity(request).tenant
    return get_or_404(
        lambda: selectors.mcp_server_get(tenant=tenant, server_id=server_id), "MCP server"
    )


def _server_data(request: Request, view: APIView, server: McpServer) -> Any:
    return McpServerSerializer(server, context=_server_context(request, view)).data


def _server_context(request: Request, view: APIView) -> dict[str, Any]:
    # Server args/env may carry secret-bearing configuration: owners and admins only.
    return {"reveal_config": IsTenantAdmin().has_permission(request, view)}


def _tool(request: Request, tool_id: uuid.UUID) -> Tool:
    tenant = request_identity(request).tenant
    return get_or_404(lambda: selectors.tool_get(tenant=tenant, tool_id=tool_id), "tool")


_TEMPLATES_INVALID = error_responses(
    503, _503="`stdio_templates_invalid`: the operator's stdio templates are misconfigured."
)
_SAVE_ERRORS = {
    **error_responses(409, _409="`name_taken`: the tenant has a server of that name."),
    **_TEMPLATES_INVALID,
}
_TOOL_MISSING = error_responses(
    409, _409="`tool_missing`: its server no longer offers it, so it can't be enabled."
)


class McpServerListApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantOperatorForWrites]

    @extend_schema(responses=McpServerSerializer(many=True), summary="List MCP servers")
    def get(self, request: Request) -> Response:
        tenant = request_identity(request).tenant
        return paginated(
            request,
            self,
            selectors.mcp_server_list(tenant=tenant),
            McpServerSerializer,
            context=_server_context(request, self),
        )

    @extend_schema(
        request=McpServerInputSerializer,
        responses={201: McpServerSerializer, **_SAVE_ERRORS},
        summary="Register an MCP server",
    )
    def post(self, request: Request) -> Response:
        data = McpServerInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        secret = fields.pop("auth_secret", None)
        server = services.mcp_server_save(
            tenant=request_identity(request).tenant, auth_secret=secret, **fields
        )
        return Response(_server_data(request, self, server), status=status.HTTP_201_CREATED)


class McpServerDetailApi(APIView):
    permission_classes = [IsTenantOperatorForWrites]

    @extend_schema(responses=McpServerSerializer, summary="Get an MCP server")
    def get(self, request: Request, server_id: uuid.UUID) -> Response:
        return Response(_server_data(request, self, _server(request, server_id)))

    @extend_schema(
        request=McpServerInputSerializer,
        responses={200: McpServerSerializer, **_SAVE_ERRORS},
        summary="Change an MCP server",
    )
    def patch(self, request: Request, server_id: uuid.UUID) -> Response:
        server = _server(request, server_id)
        data = McpServerInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        secret = fields.pop("auth_secret", None)
        server = services.mcp_server_save(
            tenant=server.tenant, server=server, auth_secret=secret, **fields
        )
        return Response(_server_data(request, self, server))

    @extend_schema(
        responses={204: None}, summary="Delete an MCP server (and its tools from the catalog)"
    )
    def delete(self, request: Request, server_id: uuid.UUID) -> Response:
        services.mcp_server_delete(server=_server(request, server_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class McpServerDiscoverApi(APIView):
    permission_classes = [IsTenantOperatorForWrites]

    @extend_schema(
        request=DiscoverInputSerializer,
        responses={
            200: DiscoverResponseSerializer,
            **error_responses(
                502,
                503,
                _502="`discovery_failed`, with `details.reason`: connect_failed, "
                "connect_timeout, timeout, discovery_invalid, server_misconfigured, ….",
                _503="`discovery_unavailable`: no worker discovered the stdio server in time; "
                "or `stdio_templates_invalid`.",
            ),
        },
        summary="Discover the server's tools and upsert the catalog",
        description="New tools arrive disabled unless `approve`; a tool whose schema changed "
        "since approval is disabled until re-enabled; tools the server no longer lists are "
        "flagged missing. stdio servers are discovered on a worker. 502 `discovery_failed` "
        "when the server gave no usable tool list, 503 `discovery_unavailable` when no worker "
        "did it in time.",
    )
    def post(self, request: Request, server_id: uuid.UUID) -> Response:
        server = _server(request, server_id)
        data = DiscoverInputSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        try:
            result = services.tool_discover_requested(
                server=server,
                approve=data.validated_data["approve"],
                by=authenticated_user(request),
            )
        except DiscoveryFailed as exc:
            return Response(
                error_body(exc.code, exc.message, exc.details), status=status.HTTP_502_BAD_GATEWAY
            )
        server.refresh_from_db()
        return Response({"server": _server_data(request, self, server), "result": result.as_dict()})


class McpServerTemplateListApi(APIView):
    permission_classes = [IsTenantMember]

    @extend_schema(
        responses={200: StdioTemplateSerializer(many=True), **_TEMPLATES_INVALID},
        summary="List the stdio server templates a tenant may use",
        description="Defined by the platform operator (WARDEN_MCP_STDIO_TEMPLATES). A stdio "
        "server names one in `template` and sets only the `args` and `env` it declares; "
        "`workspace_path` values are paths inside the tenant's workspace directory.",
    )
    def get(self, request: Request) -> Response:
        described = [t.describe() for t in stdio_templates().values()]
        return Response(StdioTemplateSerializer(described, many=True).data)


class ToolListApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantOperatorForWrites]

    @extend_schema(
        responses={
            200: ToolSerializer(many=True),
            **error_responses(404, _404="No such MCP `server`."),
        },
        summary="List the tool catalog",
        parameters=[
            OpenApiParameter("source", str, enum=ToolSource.values),
            OpenApiParameter("server", uuid.UUID, description="Tools of this MCP server."),
            OpenApiParameter("enabled", bool),
        ],
    )
    def get(self, request: Request) -> Response:
        tenant = request_identity(request).tenant
        source = request.query_params.get("source")
        if source is not None and source not in ToolSource.values:
            raise ValidationError({"source": [f"Must be one of {', '.join(ToolSource.values)}."]})
        server = None
        server_id = request.query_params.get("server")
        if server_id is not None:
            try:
                server = _server(request, uuid.UUID(server_id))
            except ValueError:
                raise ValidationError({"server": ["Must be a UUID."]}) from None
        tools = selectors.tool_list(
            tenant=tenant,
            source=source,
            server=server,
            enabled=bool_query_param(request, "enabled"),
        )
        return paginated(request, self, tools, ToolSerializer)


class ToolDetailApi(APIView):
    permission_classes = [IsTenantOperatorForWrites]

    @extend_schema(responses=ToolSerializer, summary="Get a tool")
    def get(self, request: Request, tool_id: uuid.UUID) -> Response:
        return Response(ToolSerializer(_tool(request, tool_id)).data)

    @extend_schema(
        request=ToolUpdateSerializer,
        responses={200: ToolSerializer, **_TOOL_MISSING},
        summary="Govern a tool (enable = approve its current schema)",
    )
    def patch(self, request: Request, tool_id: uuid.UUID) -> Response:
        tool = _tool(request, tool_id)
        data = ToolUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        tool = services.tool_update(
            tool=tool, by=authenticated_user(request), **dict(data.validated_data)
        )
        return Response(ToolSerializer(tool).data)


class ToolApproveApi(APIView):
    permission_classes = [IsTenantOperatorForWrites]

    @extend_schema(
        request=None,
        responses={200: ToolSerializer, **_TOOL_MISSING},
        summary="Approve the tool's current schema and enable it",
    )
    def post(self, request: Request, tool_id: uuid.UUID) -> Response:
        tool = services.tool_approve(tool=_tool(request, tool_id), by=authenticated_user(request))
        return Response(ToolSerializer(tool).data)
