"""MCP servers and the tool catalog.

A long-running tool call's job points at a turn, so it is the agents' business:
apps.agents.models.ToolJob.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.llm.models import Sensitivity
from apps.tenants.models import TenantOwned


class Transport(models.TextChoices):
    STDIO = "stdio", "stdio (a local process)"
    STREAMABLE_HTTP = "streamable_http", "Streamable HTTP"
    SSE = "sse", "HTTP + SSE"
    WEBSOCKET = "websocket", "Websocket"


class ServerStatus(models.TextChoices):
    UNKNOWN = "unknown", "Not discovered yet"
    OK = "ok", "OK"
    ERROR = "error", "Error"


class McpServer(TenantOwned):
    """An MCP server a tenant registered, and how to reach it.

    A stdio server runs a template the platform operator defined (`template`), with the
    tenant's `args` and `env` for it; the command itself is never the tenant's choice.

    `auth_secret_encrypted` is the server's static secret (an API key, say), Fernet-encrypted;
    it is sent as the `auth_header` header (network transports) or the `auth_env` variable
    (stdio) and is never returned by the API nor written to events, logs or prompts.
    `credential_header` / `credential_env` say where the per-call credential Warden mints for
    each tool invocation goes; a server with neither never receives one.
    """

    name = models.SlugField(max_length=100)
    description = models.TextField(blank=True)
    transport = models.CharField(max_length=16, choices=Transport.choices)
    template = models.CharField(
        max_length=100,
        blank=True,
        help_text="stdio: the operator's server template (WARDEN_MCP_STDIO_TEMPLATES).",
    )
    args = models.JSONField(
        default=dict,
        blank=True,
        help_text="stdio: the template's arguments, name → value (only those it declares).",
    )
    env = models.JSONField(
        default=dict,
        blank=True,
        help_text="stdio: the template's environment variables, name → value (not for secrets).",
    )
    url = models.CharField(
        max_length=2000, blank=True, help_text="http(s):// or ws(s):// URL of the server."
    )
    auth_secret_encrypted = models.TextField(blank=True, editable=False)
    auth_header = models.CharField(
        max_length=100,
        blank=True,
        help_text="Network transports: header carrying the auth secret "
        '("Authorization" sends "Bearer <secret>").',
    )
    auth_env = models.CharField(
        max_length=100, blank=True, help_text="stdio: environment variable with the auth secret."
    )
    credential_header = models.CharField(
        max_length=100,
        blank=True,
        help_text="Network transports: header carrying the per-call credential.",
    )
    credential_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="stdio: environment variable carrying the per-call credential "
        "(each such call gets its own process).",
    )
    connect_timeout_s = models.FloatField(default=15.0)
    status = models.CharField(
        max_length=8, choices=ServerStatus.choices, default=ServerStatus.UNKNOWN, editable=False
    )
    last_discovered_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="uniq_mcp_server_tenant_name")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def has_auth_secret(self) -> bool:
        return bool(self.auth_secret_encrypted)


class ToolSource(models.TextChoices):
    MCP = "mcp", "MCP server"
    WASM = "wasm", "WASM module (sandboxed)"
    BUILTIN = "builtin", "Builtin (Python)"


class RiskTier(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class Tool(TenantOwned):
    """One entry of the tenant's tool catalog: what the model sees and how it is governed.

    `name` is what agents list in `allowed_tools` and what the model calls; `remote_name` is
    the tool's name on its MCP server (or the WASM module's / builtin's name). A tool is usable
    only while `enabled`; enabling approves the current `schema_hash`. Discovery disables a tool
    whose schema no longer matches the approved one (`schema_changed`: a changed tool is a
    supply-chain risk) or that its server stopped listing (`missing`).
    """

    name = models.CharField(max_length=64)
    remote_name = models.CharField(max_length=128)
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    input_schema = models.JSONField(default=dict)
    output_schema = models.JSONField(null=True, blank=True)
    annotations = models.JSONField(
        default=dict, blank=True, help_text="The server's hints (readOnlyHint, …); not facts."
    )
    source = models.CharField(max_length=8, choices=ToolSource.choices)
    server = models.ForeignKey(
        McpServer, null=True, blank=True, on_delete=models.CASCADE, related_name="tools"
    )
    wasm_module = models.CharField(
        max_length=100, blank=True, help_text="WASM: module name in apps/tools/wasm_modules."
    )
    wasm_sha256 = models.CharField(
        max_length=64, blank=True, help_text="WASM: the approved module bytes' SHA-256."
    )
    wasm_memory_mb = models.PositiveIntegerField(default=64, help_text="WASM: memory cap.")
    risk_tier = models.CharField(max_length=8, choices=RiskTier.choices, default=RiskTier.MEDIUM)
    data_sensitivity = models.CharField(
        max_length=16,
        choices=Sensitivity.choices,
        default=Sensitivity.INTERNAL,
        help_text="The most sensitive data this tool may be given.",
    )
    idempotent = models.BooleanField(
        default=False, help_text="Safe to run twice with the same arguments (retries, resume)."
    )
    timeout_s = models.FloatField(default=30.0)
    retry_max_attempts = models.PositiveIntegerField(default=3)
    retry_base_delay_s = models.FloatField(default=0.5)
    retry_max_delay_s = models.FloatField(default=8.0)
    long_running = models.BooleanField(
        default=False,
        help_text="Run as its own job: the turn waits without holding a worker.",
    )
    enabled = models.BooleanField(default=False)
    schema_hash = models.CharField(max_length=64, blank=True, editable=False)
    approved_schema_hash = models.CharField(max_length=64, blank=True, editable=False)
    approved_at = models.DateTimeField(null=True, blank=True, editable=False)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    schema_changed = models.BooleanField(default=False, editable=False)
    missing = models.BooleanField(default=False, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="uniq_tool_tenant_name")
        ]
        indexes = [models.Index(fields=["server", "remote_name"])]

    def __str__(self) -> str:
        return self.name

    @property
    def is_available(self) -> bool:
        """Enabled, approved as it is now, still offered, and its server switched on."""
        return (
            self.enabled
            and not self.schema_changed
            and not self.missing
            and bool(self.schema_hash)
            and self.schema_hash == self.approved_schema_hash
            and (self.server is None or self.server.is_active)
        )
