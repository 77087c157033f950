"""`python manage.py tools …`: what operators script about MCP servers and the catalog.

    tools discover <server> --tenant <slug> [--approve]
    tools list --tenant <slug> [--server <name>]
    tools approve <tool> --tenant <slug>
    tools register-wasm <module> --tenant <slug> [--name N] [--approve]
    tools register-builtin <name> --tenant <slug> [--approve]

Exit status 0 on success, 1 on failure (a message on stderr says why).

`tools discover` runs the discovery in this process (the operator's own shell on a worker host;
no worker needs to be running), so it may start stdio servers, as workers do. Web processes
never do: they hand discovery to a worker.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.exceptions import WardenError
from apps.tenants.exceptions import TenantNotFound
from apps.tenants.models import Tenant
from apps.tenants.selectors import tenant_get_by_slug
from apps.tools import selectors, services
from apps.tools.executors.mcp_pool import allow_stdio_servers
from apps.tools.models import McpServer, Tool


class Command(BaseCommand):
    help = "Discover, list and approve tools of a tenant's catalog."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def with_tenant(name: str, help_text: str) -> ArgumentParser:
            command = sub.add_parser(name, help=help_text)
            command.add_argument("--tenant", required=True, help="the tenant's slug")
            return command

        discover = with_tenant("discover", "connect to an MCP server and upsert its tools")
        discover.add_argument("server", help="the MCP server's name")
        discover.add_argument(
            "--approve", action="store_true", help="enable new tools (never a changed one)"
        )
        listing = with_tenant("list", "list the catalog")
        listing.add_argument("--server", help="only this MCP server's tools")
        approve = with_tenant("approve", "approve a tool's current schema and enable it")
        approve.add_argument("tool", help="the tool's catalog name")
        wasm = with_tenant("register-wasm", "add a WASM tool from apps/tools/wasm_modules")
        wasm.add_argument("module", help="the module's name (word_count, …)")
        wasm.add_argument("--name", help="catalog name (default: the module's)")
        wasm.add_argument("--approve", action="store_true")
        builtin = with_tenant("register-builtin", "put a builtin under catalog governance")
        builtin.add_argument("name")
        builtin.add_argument("--approve", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = tenant_get_by_slug(slug=options["tenant"])
        except TenantNotFound as exc:
            raise CommandError(exc.message) from None
        action = options["action"]
        try:
            if action == "discover":
                self._discover(tenant, options["server"], approve=options["approve"])
            elif action == "list":
                self._list(tenant, options.get("server"))
            elif action == "approve":
                tool = self._tool(tenant, options["tool"])
                tool = services.tool_approve(tool=tool)
                self.stdout.write(f"approved and enabled {tool.name} ({tool.schema_hash[:12]})")
            elif action == "register-wasm":
                tool = services.tool_register_wasm(
                    tenant=tenant,
                    module=options["module"],
                    name=options.get("name"),
                    approve=options["approve"],
                )
                self.stdout.write(f"registered {tool.name} ({self._state(tool)})")
            elif action == "register-builtin":
                tool = services.tool_register_builtin(
                    tenant=tenant, name=options["name"], approve=options["approve"]
                )
                self.stdout.write(f"registered {tool.name} ({self._state(tool)})")
        except WardenError as exc:
            raise CommandError(f"{exc.message} [{exc.code}]") from None

    def _server(self, tenant: Tenant, name: str) -> McpServer:
        try:
            return selectors.mcp_server_get_by_name(tenant=tenant, name=name)
        except McpServer.DoesNotExist:
            raise CommandError(f"No MCP server {name!r} in tenant {tenant.slug}.") from None

    def _tool(self, tenant: Tenant, name: str) -> Tool:
        try:
            return selectors.tool_get_by_name(tenant=tenant, name=name)
        except Tool.DoesNotExist:
            raise CommandError(f"No tool {name!r} in tenant {tenant.slug}.") from None

    def _discover(self, tenant: Tenant, name: str, *, approve: bool) -> None:
        server = self._server(tenant, name)
        allow_stdio_servers("manage.py tools discover")
        result = services.tool_discover(server=server, approve=approve)
        self.stdout.write(f"{server.name}: {result.listed} tool(s) listed")
        for label, names in result.changes().items():
            if names:
                self.stdout.write(f"  {label.replace('_', ' ')}: {', '.join(sorted(names))}")
        if result.schema_changed:
            self.stdout.write(
                "  changed tools are disabled until approved: "
                f"manage.py tools approve <tool> --tenant {tenant.slug}"
            )

    def _list(self, tenant: Tenant, server_name: str | None) -> None:
        server = self._server(tenant, server_name) if server_name else None
        tools = list(selectors.tool_list(tenant=tenant, server=server))
        if not tools:
            self.stdout.write("no tools")
            return
        width = max(len(t.name) for t in tools)
        for tool in tools:
            origin = tool.server.name if tool.server else tool.wasm_module or "builtin"
            self.stdout.write(
                f"{tool.name:<{width}}  {tool.source:<7}  {origin:<16}  "
                f"{tool.risk_tier:<8}  {self._state(tool)}"
            )

    @staticmethod
    def _state(tool: Tool) -> str:
        if tool.missing:
            return "missing (disabled)"
        if tool.schema_changed:
            return "schema changed (disabled until approved)"
        if tool.enabled:
            return "enabled"
        if tool.schema_hash != tool.approved_schema_hash:
            return "pending approval"
        return "disabled"
