from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from apps.agents.models import ActionNode, Agent, AgentSession, Environment, RiskTier, Turn
from apps.core.api.serializers import MAX_TOKENS, PG_INT_MAX, StrictInputSerializer
from apps.llm.models import Sensitivity, Tier


class AgentSerializer(serializers.ModelSerializer):
    allowed_endpoints: serializers.Field = serializers.SlugRelatedField(
        slug_field="name", many=True, read_only=True
    )

    class Meta:
        model = Agent
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "system_prompt",
            "model_tier",
            "allowed_endpoints",
            "allowed_tools",
            "max_steps",
            "data_sensitivity",
            "max_input_tokens_per_turn",
            "max_output_tokens_per_turn",
            "max_tokens_per_session",
            "is_active",
            "created_at",
            "updated_at",
        ]


class AgentInputSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True)
    system_prompt = serializers.CharField(required=False, allow_blank=True, max_length=20000)
    model_tier = serializers.ChoiceField(choices=Tier.choices, required=False)
    allowed_endpoints = serializers.ListField(child=serializers.UUIDField(), required=False)
    allowed_tools = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False
    )
    max_steps = serializers.IntegerField(min_value=1, max_value=100, required=False)
    data_sensitivity = serializers.ChoiceField(choices=Sensitivity.choices, required=False)
    max_input_tokens_per_turn = serializers.IntegerField(
        min_value=1, max_value=MAX_TOKENS, required=False
    )
    max_output_tokens_per_turn = serializers.IntegerField(
        min_value=1, max_value=MAX_TOKENS, required=False
    )
    max_tokens_per_session = serializers.IntegerField(
        min_value=1, max_value=PG_INT_MAX, required=False
    )
    is_active = serializers.BooleanField(required=False)


class SessionSerializer(serializers.ModelSerializer):
    agent = serializers.UUIDField(source="agent_id", read_only=True)
    links = serializers.SerializerMethodField()

    class Meta:
        model = AgentSession
        fields = [
            "id",
            "agent",
            "title",
            "status",
            "environment",
            "risk_tier",
            "data_sensitivity",
            "metadata",
            "tokens_used",
            "created_at",
            "updated_at",
            "links",
        ]

    def get_links(self, obj: AgentSession) -> dict[str, str]:
        return session_links(obj)


def session_links(session: AgentSession) -> dict[str, str]:
    return {
        "turns": reverse("session-turns", kwargs={"session_id": session.id}),
        "events": reverse("session-events", kwargs={"session_id": session.id}),
        "websocket": f"/ws/sessions/{session.id}/",
    }


class SessionCreateSerializer(StrictInputSerializer):
    agent = serializers.UUIDField()
    title = serializers.CharField(max_length=200, required=False, allow_blank=True)
    environment = serializers.ChoiceField(choices=Environment.choices, required=False)
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, required=False)
    data_sensitivity = serializers.ChoiceField(choices=Sensitivity.choices, required=False)
    metadata = serializers.DictField(required=False)


class SessionStateSerializer(StrictInputSerializer):
    state = serializers.DictField()
    ttl_seconds = serializers.IntegerField(min_value=1, max_value=30 * 86400, required=False)


class SessionStateOutSerializer(serializers.Serializer):
    state = serializers.DictField(help_text="Empty once the state's TTL has passed.")
    expires_at = serializers.DateTimeField(allow_null=True)


class TurnSerializer(serializers.ModelSerializer):
    session = serializers.UUIDField(source="session_id", read_only=True)
    links = serializers.SerializerMethodField()

    class Meta:
        model = Turn
        fields = [
            "id",
            "session",
            "seq",
            "status",
            "user_message",
            "final_answer",
            "outcome",
            "detail",
            "input_tokens",
            "output_tokens",
            "attempts",
            "cancel_requested",
            "created_at",
            "started_at",
            "finished_at",
            "links",
        ]

    def get_links(self, obj: Turn) -> dict[str, str]:
        return {
            "self": reverse("turn-detail", kwargs={"turn_id": obj.id}),
            "steps": reverse("turn-steps", kwargs={"turn_id": obj.id}),
            "cancel": reverse("turn-cancel", kwargs={"turn_id": obj.id}),
            **session_links(obj.session),
        }


class TurnCreateSerializer(StrictInputSerializer):
    message = serializers.CharField(trim_whitespace=False, allow_blank=True)
    # A prompt too long for the agent's first-choice model may go to a larger-context one.
    allow_model_upgrade = serializers.BooleanField(required=False, default=False)


class NodeSerializer(serializers.ModelSerializer):
    """An action-graph node. `scratchpad` (the model's private reasoning) only for operators."""

    class Meta:
        model = ActionNode
        fields = [
            "node_id",
            "position",
            "kind",
            "status",
            "step_index",
            "call_index",
            "attempt",
            "parents",
            "inputs",
            "outputs",
            "latency_ms",
            "input_tokens",
            "output_tokens",
            "created_at",
            "updated_at",
        ]


class NodeWithScratchpadSerializer(NodeSerializer):
    class Meta(NodeSerializer.Meta):
        fields = [*NodeSerializer.Meta.fields, "scratchpad"]


class AuditQuerySerializer(serializers.Serializer):
    after_seq = serializers.IntegerField(
        min_value=0,
        max_value=2**63 - 1,
        required=False,
        default=0,
        help_text="Continue after this chain seq (the page's `next_after_seq`); 0: from the start.",
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=500, required=False, default=100, help_text="Events per page."
    )


class AuditHeadSerializer(serializers.Serializer):
    seq = serializers.IntegerField(help_text="The chain's last seq (0 before its first event).")
    hash = serializers.CharField(help_text="The last event's hash (64 zeros before the first).")


class AuditDamageSerializer(serializers.Serializer):
    problem = serializers.ChoiceField(choices=["altered", "missing", "reordered", "unsealed"])
    seq = serializers.IntegerField(allow_null=True)
    event_id = serializers.IntegerField(allow_null=True)
    detail = serializers.CharField()


class AuditEventSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    id = serializers.IntegerField(help_text="The event id (also its SSE id).")
    type = serializers.CharField()
    turn = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()
    payload = serializers.JSONField()
    prev_hash = serializers.CharField()
    hash = serializers.CharField()
    canonical = serializers.CharField(
        help_text="The exact text whose SHA-256 (of its UTF-8 bytes) is `hash`."
    )
    intact = serializers.BooleanField(help_text="`hash` recomputes from `canonical`.")
    linked = serializers.BooleanField(
        help_text="`prev_hash` is the hash of the event before it (false when unknown)."
    )


class AuditPageSerializer(serializers.Serializer):
    session = serializers.UUIDField()
    head = AuditHeadSerializer()
    events = AuditEventSerializer(many=True)
    next_after_seq = serializers.IntegerField(
        allow_null=True, help_text="Pass as `after_seq` for the next page; null on the last."
    )
    damage = AuditDamageSerializer(
        allow_null=True, help_text="The first damage seen on this page; null when none."
    )
