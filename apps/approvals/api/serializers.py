from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.approvals.models import ApprovalRequest, ApprovalStatus
from apps.approvals.services import MAX_RATIONALE
from apps.core.api.serializers import StrictInputSerializer
from apps.core.exceptions import InvalidInput
from apps.core.redaction import redact_payload


def _username(user: Any) -> str | None:
    return user.get_username() if user is not None else None


class ApprovalSerializer(serializers.ModelSerializer):
    """A request to run one parked tool call. The arguments themselves are never shown:
    `arguments_summary` is redacted (secret-shaped keys and values, then the tenant's PII
    redaction, as on the Slack card), `arguments_digest` is their SHA-256."""

    turn = serializers.UUIDField(source="turn_id", read_only=True)
    session = serializers.UUIDField(source="session_id", read_only=True)
    requested_by = serializers.SerializerMethodField()
    decided_by = serializers.SerializerMethodField()

    class Meta:
        model = ApprovalRequest
        fields = [
            "id",
            "status",
            "turn",
            "session",
            "call_key",
            "step_index",
            "tool_name",
            "arguments_digest",
            "arguments_summary",
            "reasons",
            "context",
            "requested_by",
            "decided_by",
            "decided_via",
            "approver",
            "rationale",
            "decided_at",
            "expires_at",
            "created_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance: ApprovalRequest) -> Any:
        data = super().to_representation(instance)
        data["arguments_summary"] = redact_payload(data["arguments_summary"], instance.tenant_id)
        return data

    def get_requested_by(self, obj: ApprovalRequest) -> str | None:
        return _username(obj.requested_by)

    def get_decided_by(self, obj: ApprovalRequest) -> str | None:
        return _username(obj.decided_by)


class ApprovalListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ApprovalStatus.choices, required=False)
    turn = serializers.UUIDField(required=False)


class ApproveInputSerializer(StrictInputSerializer):
    rationale = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_RATIONALE, trim_whitespace=True
    )


class RejectInputSerializer(StrictInputSerializer):
    # Required and not blank, as the schema says (a pattern of one non-space character); a
    # missing or blank one is the 400 `rationale_required` the service gives on every channel.
    rationale = serializers.RegexField(r"\S", max_length=MAX_RATIONALE, trim_whitespace=True)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and not str(data.get("rationale") or "").strip():
            raise InvalidInput("A rejection needs a rationale.", code="rationale_required")
        return super().to_internal_value(data)
