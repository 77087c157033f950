from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.core.api.serializers import StrictInputSerializer
from apps.policies.models import DEFAULT_ENTRY_POINT, Policy, PolicyMode, PolicyVersion


class PolicySerializer(serializers.ModelSerializer):
    """A policy with its current source and version. `agent_slug` / `tool_name` empty: any."""

    source = serializers.SerializerMethodField()  # type: ignore[assignment]
    version = serializers.SerializerMethodField()
    version_id = serializers.SerializerMethodField()

    class Meta:
        model = Policy
        fields = [
            "id",
            "name",
            "description",
            "mode",
            "entry_point",
            "agent_slug",
            "tool_name",
            "source",
            "version",
            "version_id",
            "created_at",
            "updated_at",
        ]

    def get_source(self, policy: Policy) -> str:
        return policy.source

    def get_version(self, policy: Policy) -> int | None:
        return policy.current_version.number if policy.current_version else None

    def get_version_id(self, policy: Policy) -> str | None:
        return str(policy.current_version_id) if policy.current_version_id else None


class PolicyInputSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    source = serializers.CharField(trim_whitespace=False)  # type: ignore[assignment]
    entry_point = serializers.CharField(required=False, max_length=200, default=DEFAULT_ENTRY_POINT)
    mode = serializers.ChoiceField(choices=PolicyMode.choices, required=False)
    agent_slug = serializers.SlugField(
        required=False, allow_blank=True, max_length=100, help_text="Empty: every agent."
    )
    tool_name = serializers.CharField(
        required=False, allow_blank=True, max_length=64, help_text="Empty: every tool."
    )


class PolicyVersionSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author_label", read_only=True)

    class Meta:
        model = PolicyVersion
        fields = [
            "id",
            "number",
            "source",
            "entry_point",
            "mode",
            "agent_slug",
            "tool_name",
            "digest",
            "author",
            "created_at",
        ]


class EvaluateInputSerializer(StrictInputSerializer):
    input = serializers.DictField(help_text="The input document (see README: Policies).")

    def validate_input(self, value: Any) -> Any:
        return dict(value)


class PolicyResultSerializer(serializers.Serializer):
    allow = serializers.BooleanField()
    require_approval = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField())
    obligations = serializers.ListField(child=serializers.JSONField())


class EvaluationSerializer(serializers.Serializer):
    policy_id = serializers.UUIDField()
    name = serializers.CharField()
    version = serializers.IntegerField()
    version_id = serializers.UUIDField()
    digest = serializers.CharField()
    mode = serializers.CharField()
    engine = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["allow", "deny", "require_approval"])
    result = PolicyResultSerializer()
    error = serializers.CharField(allow_null=True, help_text="timeout or engine_error")
    latency_us = serializers.IntegerField()
    value = serializers.JSONField(help_text="What the entry point produced, as is.")
    defined = serializers.BooleanField()
