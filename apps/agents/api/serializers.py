from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import serializers

from apps.agents.models import ActionNode, Agent, AgentSession, Environment, RiskTier, Turn
from apps.core.api.serializers import (
    MAX_TOKENS,
    PG_INT_MAX,
    FieldsBuiltOnce,
    StrictInputSerializer,
)
from apps.core.redaction import redact_payload
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


class SessionSerializer(FieldsBuiltOnce):
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


class RedactedSerializer(FieldsBuiltOnce):
    """Scrubs `redacted_fields` (apps.core.redaction, the row's tenant settings) unless the
    context says `unredacted` — which views set for tenant admins only, so a serializer used
    without that context redacts. `private_fields` (the model's scratchpad) are scrubbed for
    everyone: the private scratchpad never leaves the platform unredacted."""

    redacted_fields: tuple[str, ...] = ()
    private_fields: tuple[str, ...] = ()

    def to_representation(self, instance: Any) -> Any:
        data = super().to_representation(instance)
        unredacted = self.context.get("unredacted", False)
        for name in self.private_fields + (() if unredacted else self.redacted_fields):
            if name in data:
                data[name] = redact_payload(data[name], instance.tenant_id)
        return data


def redaction_context(*, unredacted: bool) -> dict[str, Any]:
    return {"unredacted": unredacted}


class TurnSerializer(RedactedSerializer):
    redacted_fields = ("user_message", "final_answer", "detail")

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


class NodeSerializer(RedactedSerializer):
    """An action-graph node. `scratchpad` (the model's private reasoning) only for operators,
    and redacted for them too; inputs and outputs (tool arguments, results) redacted below admin.
    """

    redacted_fields = ("inputs", "outputs")
    private_fields = ("scratchpad",)

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
            # The OpenTelemetry trace of the run that wrote it (README "Traces and metrics").
            "trace_id",
            "created_at",
            "updated_at",
        ]


class NodeWithScratchpadSerializer(NodeSerializer):
    class Meta(NodeSerializer.Meta):
        fields = [*NodeSerializer.Meta.fields, "scratchpad"]


class ReplayInputSerializer(StrictInputSerializer):
    policies = serializers.ChoiceField(
        choices=["recorded", "current"],
        default="recorded",
        help_text="`recorded` (reproduction): evaluate the policy versions each decision "
        "recorded; `current`: the agent's policies as they are now.",
    )


class DivergenceSerializer(serializers.Serializer):
    turn_id = serializers.UUIDField()
    turn_seq = serializers.IntegerField()
    step_index = serializers.IntegerField(allow_null=True)
    call_index = serializers.IntegerField(allow_null=True)
    node_id = serializers.CharField(allow_blank=True, help_text="Empty for the turn's end.")
    kind = serializers.CharField(help_text="model_call, tool_call, policy, observation or turn.")
    code = serializers.CharField(
        help_text="no_recorded_output, model_input_differs, model_step_differs, tool_differs, "
        "tool_arguments_differ, tool_status_differs, observation_differs, "
        "policy_decision_differs, turn_outcome_differs, final_answer_differs, "
        "recorded_node_not_replayed, unrecorded_node."
    )
    field = serializers.CharField(allow_blank=True)
    recorded = serializers.JSONField(allow_null=True)
    replayed = serializers.JSONField(allow_null=True)
    message = serializers.CharField()


class TurnReplaySerializer(serializers.Serializer):
    turn_id = serializers.UUIDField()
    seq = serializers.IntegerField()
    recorded_status = serializers.CharField()
    recorded_outcome = serializers.CharField(allow_blank=True)
    replayed_outcome = serializers.CharField(allow_blank=True)
    nodes_compared = serializers.IntegerField()
    reproduces = serializers.BooleanField()
    note = serializers.CharField(allow_blank=True)


class SkippedTurnSerializer(serializers.Serializer):
    turn = serializers.UUIDField()
    seq = serializers.IntegerField()
    status = serializers.CharField()
    reason = serializers.CharField()


class ReplayReportSerializer(serializers.Serializer):
    session = serializers.UUIDField()
    policies = serializers.ChoiceField(choices=["recorded", "current"])
    reproduces = serializers.BooleanField()
    turns = TurnReplaySerializer(many=True)
    skipped = SkippedTurnSerializer(many=True)
    divergence = DivergenceSerializer(allow_null=True)


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
