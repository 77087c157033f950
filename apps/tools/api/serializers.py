from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.core.api.serializers import StrictInputSerializer
from apps.llm.models import Sensitivity
from apps.tools.models import McpServer, RiskTier, Tool, Transport

REDACTED = "[redacted]"


class McpServerSerializer(serializers.ModelSerializer):
    """An MCP server. `args` and `env` values may carry secret-bearing configuration: only
    owners and admins (and admin-scoped keys) see them; others see each name with the value
    "[redacted]", and `config_redacted` is true (`last_error` keeps only its code for them).
    Auth secrets are never returned."""

    # The view says whether to reveal: context["reveal_config"].

    has_auth_secret = serializers.BooleanField(read_only=True)
    config_redacted = serializers.SerializerMethodField()

    class Meta:
        model = McpServer
        fields = [
            "id",
            "name",
            "description",
            "transport",
            "template",
            "args",
            "env",
            "config_redacted",
            "url",
            "auth_header",
            "auth_env",
            "has_auth_secret",
            "credential_header",
            "credential_env",
            "connect_timeout_s",
            "status",
            "last_discovered_at",
            "last_error",
            "is_active",
            "created_at",
            "updated_at",
        ]

    def _reveal(self) -> bool:
        return bool(self.context.get("reveal_config", False))

    def get_config_redacted(self, server: McpServer) -> bool:
        return not self._reveal()

    def to_representation(self, instance: Any) -> Any:
        data = super().to_representation(instance)
        if not self._reveal():
            for name in ("args", "env"):
                if isinstance(data.get(name), dict):
                    data[name] = {key: REDACTED for key in data[name]}
            # The message may quote a redacted value back; the code before ":" says what failed.
            if data.get("last_error"):
                code = str(data["last_error"]).partition(":")[0]
                data["last_error"] = f"{code}: {REDACTED}"
        return data


class McpServerInputSerializer(StrictInputSerializer):
    name = serializers.SlugField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True)
    transport = serializers.ChoiceField(choices=Transport.choices)
    template = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="stdio: the name of a template the platform operator defines "
        "(GET /api/v1/mcp-server-templates). The template fixes the command.",
    )
    args = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        help_text='stdio: values for the template\'s arguments, e.g. {"--repository": "repo"}. '
        "400 argument_not_allowed for an argument it does not declare, argument_invalid for a "
        "value its validator refuses, argument_missing for a required one left out.",
    )
    env = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        help_text="stdio: values for the template's environment variables. 400 env_not_allowed "
        "for a variable it does not declare (interpreter, loader and shell variables never are), "
        "env_invalid for a value its validator refuses.",
    )
    url = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    auth_secret = serializers.CharField(
        required=False,
        allow_blank=True,
        write_only=True,
        help_text="Stored encrypted; never returned. Empty clears it.",
    )
    auth_header = serializers.CharField(required=False, allow_blank=True, max_length=100)
    auth_env = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="stdio: a `secret` variable of the template that carries auth_secret.",
    )
    credential_header = serializers.CharField(required=False, allow_blank=True, max_length=100)
    credential_env = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="stdio: a `secret` variable of the template for the per-call credential.",
    )
    connect_timeout_s = serializers.FloatField(min_value=0.1, max_value=120, required=False)
    is_active = serializers.BooleanField(required=False)


class StdioParamSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["regex", "choices", "workspace_path", "secret"])
    pattern = serializers.CharField(required=False)
    choices = serializers.ListField(child=serializers.CharField(), required=False)
    must_contain = serializers.CharField(required=False)
    description = serializers.CharField(required=False)

    def get_fields(self) -> dict[str, serializers.Field]:
        # `required` is also a Field attribute: declared here rather than as a class attribute.
        fields = super().get_fields()
        fields["required"] = serializers.BooleanField()
        return fields


class StdioTemplateSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    args = serializers.DictField(child=StdioParamSerializer())
    env = serializers.DictField(child=StdioParamSerializer())


class DiscoverInputSerializer(StrictInputSerializer):
    approve = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Enable new tools at once (a changed tool always waits for approval).",
    )


class DiscoveryResultSerializer(serializers.Serializer):
    listed = serializers.IntegerField()
    created = serializers.ListField(child=serializers.CharField())
    schema_changed = serializers.ListField(child=serializers.CharField())
    missing = serializers.ListField(child=serializers.CharField())
    restored = serializers.ListField(child=serializers.CharField())
    unchanged = serializers.ListField(child=serializers.CharField())


class DiscoverResponseSerializer(serializers.Serializer):
    server = McpServerSerializer()
    result = DiscoveryResultSerializer()


class ToolSerializer(serializers.ModelSerializer):
    server = serializers.UUIDField(source="server_id", read_only=True, allow_null=True)
    server_name = serializers.CharField(
        source="server.name", read_only=True, default=None, allow_null=True
    )
    available = serializers.BooleanField(source="is_available", read_only=True)
    pending_approval = serializers.SerializerMethodField()

    class Meta:
        model = Tool
        fields = [
            "id",
            "name",
            "remote_name",
            "title",
            "description",
            "input_schema",
            "output_schema",
            "annotations",
            "source",
            "server",
            "server_name",
            "wasm_module",
            "wasm_memory_mb",
            "risk_tier",
            "data_sensitivity",
            "idempotent",
            "timeout_s",
            "retry_max_attempts",
            "retry_base_delay_s",
            "retry_max_delay_s",
            "long_running",
            "enabled",
            "available",
            "pending_approval",
            "schema_hash",
            "approved_schema_hash",
            "approved_at",
            "schema_changed",
            "missing",
            "last_seen_at",
            "created_at",
            "updated_at",
        ]

    def get_pending_approval(self, tool: Tool) -> bool:
        return tool.schema_hash != tool.approved_schema_hash


class ToolUpdateSerializer(StrictInputSerializer):
    enabled = serializers.BooleanField(
        required=False, help_text="true approves the tool's current schema."
    )
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, required=False)
    data_sensitivity = serializers.ChoiceField(choices=Sensitivity.choices, required=False)
    idempotent = serializers.BooleanField(required=False)
    timeout_s = serializers.FloatField(min_value=0.01, max_value=3600, required=False)
    retry_max_attempts = serializers.IntegerField(min_value=1, max_value=10, required=False)
    retry_base_delay_s = serializers.FloatField(min_value=0, max_value=60, required=False)
    retry_max_delay_s = serializers.FloatField(min_value=0, max_value=600, required=False)
    long_running = serializers.BooleanField(required=False)
    wasm_memory_mb = serializers.IntegerField(min_value=1, max_value=4096, required=False)
