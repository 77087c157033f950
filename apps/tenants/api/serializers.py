from __future__ import annotations

from rest_framework import serializers

from apps.core import redaction
from apps.core.api.serializers import StrictInputSerializer
from apps.tenants.models import ApiKey, ApiKeyScope, Invitation, Membership, Role, Tenant


class TenantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ["id", "name", "slug", "is_active", "created_at"]


class MeSerializer(serializers.Serializer):
    via = serializers.CharField()
    tenant = TenantSerializer()
    roles = serializers.ListField(child=serializers.CharField())
    scopes = serializers.ListField(child=serializers.CharField())
    user = serializers.DictField(allow_null=True)
    api_key = serializers.DictField(allow_null=True)


class MembershipSerializer(serializers.ModelSerializer):
    # No e-mail: a member's address is theirs, not the tenant's to read.
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "username", "role", "created_at"]


class MembershipUpdateSerializer(StrictInputSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


class ApiKeySerializer(serializers.ModelSerializer):
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "created_at",
            "is_active",
        ]


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The secret. Shown once; store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]


class ApiKeyCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKeyScope.choices), allow_empty=False
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class InvitationSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True)
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True, default=None
    )
    accepted_by = serializers.CharField(
        source="accepted_by.username", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = Invitation
        fields = [
            "id",
            "role",
            "email",
            "status",
            "expires_at",
            "created_at",
            "created_by",
            "accepted_at",
            "accepted_by",
            "revoked_at",
        ]


class InvitationCreatedSerializer(InvitationSerializer):
    token = serializers.CharField(
        help_text="The invitation token. Shown once: give it to the person you invite."
    )

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "token"]


class InvitationCreateSerializer(StrictInputSerializer):
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class InvitationAcceptSerializer(StrictInputSerializer):
    token = serializers.CharField(max_length=200)


class MembershipJoinedSerializer(serializers.ModelSerializer):
    tenant = TenantSerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "tenant", "role", "created_at"]


class CustomPatternSerializer(StrictInputSerializer):
    name = serializers.RegexField(
        redaction.CUSTOM_NAME.pattern, max_length=32, help_text="Shown as `[REDACTED:<name>]`."
    )
    pattern = serializers.CharField(
        max_length=redaction.CUSTOM_PATTERN_MAX_LEN,
        trim_whitespace=False,
        help_text="A regular expression (Python `regex` syntax, no capturing groups).",
    )


class RedactionSettingsSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    kinds = serializers.ListField(
        child=serializers.CharField(), help_text="The PII kinds scrubbed."
    )
    always = serializers.SerializerMethodField(help_text="Kinds scrubbed whatever the settings.")
    custom_patterns = serializers.ListField(child=serializers.DictField())

    def get_always(self, _: object) -> list[str]:
        return list(redaction.CREDENTIAL_KINDS)


class RedactionSettingsInputSerializer(StrictInputSerializer):
    enabled = serializers.BooleanField(required=False)
    kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=redaction.PII_KINDS), required=False
    )
    custom_patterns = serializers.ListField(
        child=CustomPatternSerializer(),
        required=False,
        max_length=redaction.CUSTOM_PATTERNS_MAX,
    )
