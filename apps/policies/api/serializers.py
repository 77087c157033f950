from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.core.api.serializers import StrictInputSerializer
from apps.policies.defaults import DEFAULT_ENTRY_POINT
from apps.policies.models import Policy, PolicyMode, PolicyVersion


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


class WhatIfInputSerializer(StrictInputSerializer):
    sessions = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        min_length=1,
        help_text="The sessions whose recorded tool calls to evaluate (or give `since`).",
    )
    since = serializers.DateTimeField(
        required=False, help_text="Every recorded tool call of the tenant since this time."
    )
    version = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2_147_483_647,
        help_text="The version to evaluate; default: the newest not enforced, else the current.",
    )
    after = serializers.CharField(
        required=False, max_length=200, help_text="`next_after` of the previous page."
    )
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=100_000,
        help_text="Recorded decisions to read at most (capped by WARDEN_WHATIF_MAX_DECISIONS).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("sessions" in attrs) == ("since" in attrs):
            raise serializers.ValidationError(
                'Give either "sessions" or "since".', code="what_if_window"
            )
        return attrs


class WhatIfCallSerializer(serializers.Serializer):
    session = serializers.UUIDField()
    turn = serializers.UUIDField()
    turn_seq = serializers.IntegerField()
    node_id = serializers.CharField()
    step_index = serializers.IntegerField()
    call_index = serializers.IntegerField(allow_null=True)
    tool = serializers.CharField()
    arguments = serializers.JSONField(help_text="Argument names and shapes, never values.")
    arguments_restored = serializers.BooleanField(
        help_text="Whether the policy saw the call's real arguments (false: only their shapes)."
    )
    recorded_at = serializers.DateTimeField()


class WhatIfOutcomeSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=["allow", "deny", "require_approval"])
    reasons = serializers.ListField(child=serializers.CharField())


class WhatIfChangeSerializer(serializers.Serializer):
    call = WhatIfCallSerializer()
    old = WhatIfOutcomeSerializer()
    new = WhatIfOutcomeSerializer()
    version_result = WhatIfOutcomeSerializer(
        allow_null=True, help_text="The version's own verdict (null: out of its scope)."
    )


class WhatIfReportSerializer(serializers.Serializer):
    policy_id = serializers.UUIDField()
    policy = serializers.CharField()
    version = serializers.IntegerField()
    version_mode = serializers.CharField()
    evaluated = serializers.IntegerField(help_text="Recorded decisions read.")
    in_scope = serializers.IntegerField(help_text="Of those, calls the version applies to.")
    skipped = serializers.IntegerField(
        help_text="Recorded without an input (the engine failed then): not evaluated."
    )
    changed_count = serializers.IntegerField()
    transitions = serializers.DictField(
        child=serializers.IntegerField(), help_text='Changes by kind, e.g. {"allow->deny": 2}.'
    )
    truncated = serializers.BooleanField(help_text="More decisions are in the window.")
    next_after = serializers.CharField(allow_null=True, help_text="Pass as `after` to go on.")
    changed = WhatIfChangeSerializer(many=True)
