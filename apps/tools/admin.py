"""Console: MCP servers (with a "Discover tools" action) and the tool catalog.

A stdio server names one of the operator's templates (WARDEN_MCP_STDIO_TEMPLATES) and fills in
the `args` and `env` it declares (JSON objects); the command is the template's.

Every write goes through the same services as the API.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from unfold.admin import TabularInline

from apps.core.exceptions import WardenError
from apps.tenants.admin_scoping import TenantScopedAdmin
from apps.tools import services
from apps.tools.models import McpServer, Tool


class McpServerForm(forms.ModelForm):
    auth_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the current secret.",
    )
    clear_auth_secret = forms.BooleanField(required=False)

    class Meta:
        model = McpServer
        fields = [
            "tenant",
            "name",
            "description",
            "transport",
            "template",
            "args",
            "env",
            "url",
            "auth_header",
            "auth_env",
            "credential_header",
            "credential_env",
            "connect_timeout_s",
            "is_active",
        ]


class ToolInline(TabularInline):
    model = Tool
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("name", "remote_name", "risk_tier", "enabled", "schema_changed", "missing")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(McpServer)
class McpServerAdmin(TenantScopedAdmin):
    form = McpServerForm
    list_display = [
        "name",
        "tenant",
        "transport",
        "status",
        "last_discovered_at",
        "is_active",
        "has_auth_secret",
    ]
    list_filter = ["tenant", "transport", "status", "is_active"]
    search_fields = ["name", "description"]
    readonly_fields = ["status", "last_discovered_at", "last_error"]
    inlines = [ToolInline]
    actions = ["discover_tools"]

    @admin.display(boolean=True, description="auth secret")
    def has_auth_secret(self, obj: McpServer) -> bool:
        return obj.has_auth_secret

    def save_model(self, request: HttpRequest, obj: McpServer, form: Any, change: bool) -> None:
        secret = form.cleaned_data.get("auth_secret") or None
        if form.cleaned_data.get("clear_auth_secret"):
            secret = ""
        fields = {name: getattr(obj, name) for name in services.SERVER_FIELDS}
        try:
            services.mcp_server_save(tenant=obj.tenant, server=obj, auth_secret=secret, **fields)
        except WardenError as exc:
            messages.error(request, exc.message)

    @admin.action(description="Discover tools")
    def discover_tools(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        for server in queryset:
            try:
                # On a worker, waited for: stdio servers never start in a web process.
                result = services.tool_discover_requested(server=server, by=request.user)  # type: ignore[arg-type]
            except WardenError as exc:
                messages.error(request, exc.message)
                continue
            summary = ", ".join(
                f"{len(names)} {label.replace('_', ' ')}"
                for label, names in result.changes().items()
                if names
            )
            messages.success(
                request,
                f"{server.name}: {result.listed} tool(s) listed; {summary or 'no changes'}.",
            )


class ToolForm(forms.ModelForm):
    class Meta:
        model = Tool
        fields = sorted(services.TOOL_FIELDS)


@admin.register(Tool)
class ToolAdmin(TenantScopedAdmin):
    form = ToolForm
    list_display = [
        "name",
        "tenant",
        "source",
        "server",
        "risk_tier",
        "enabled",
        "pending_approval",
        "schema_changed",
        "missing",
        "long_running",
    ]
    list_filter = ["tenant", "source", "enabled", "schema_changed", "missing", "risk_tier"]
    search_fields = ["name", "remote_name", "description"]
    actions = ["approve_tools", "disable_tools"]
    readonly_fields = [
        "tenant",
        "name",
        "remote_name",
        "source",
        "server",
        "wasm_module",
        "title",
        "description",
        "input_schema",
        "output_schema",
        "annotations",
        "schema_hash",
        "approved_schema_hash",
        "approved_at",
        "approved_by",
        "schema_changed",
        "missing",
        "last_seen_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Tools enter the catalog by discovery, or `manage.py tools register-wasm|builtin`.
        return False

    @admin.display(boolean=True, description="pending approval")
    def pending_approval(self, obj: Tool) -> bool:
        return obj.schema_hash != obj.approved_schema_hash

    def save_model(self, request: HttpRequest, obj: Tool, form: Any, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in form.changed_data}
        try:
            services.tool_update(tool=obj, by=request.user, **fields)  # type: ignore[arg-type]
        except WardenError as exc:
            messages.error(request, exc.message)

    @admin.action(description="Approve and enable selected tools")
    def approve_tools(self, request: HttpRequest, queryset: QuerySet[Tool]) -> None:
        approved = 0
        for tool in queryset:
            try:
                services.tool_approve(tool=tool, by=request.user)  # type: ignore[arg-type]
                approved += 1
            except WardenError as exc:
                messages.warning(request, f"{tool.name}: {exc.message}")
        messages.success(request, f"Approved and enabled {approved} tool(s).")

    @admin.action(description="Disable selected tools")
    def disable_tools(self, request: HttpRequest, queryset: QuerySet[Tool]) -> None:
        for tool in queryset:
            services.tool_update(tool=tool, enabled=False)
        messages.success(request, f"Disabled {queryset.count()} tool(s).")
