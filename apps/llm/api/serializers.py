from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rest_framework import serializers

from apps.core.api.serializers import MAX_TOKENS, StrictInputSerializer
from apps.llm.models import (
    ENDPOINT_EDITABLE_FIELDS,
    MAX_PRICE_PER_MTOK,
    MIN_PRICE_PER_MTOK,
    PRICE_PLACES,
    PRICE_WHOLE_DIGITS,
    EndpointState,
    ModelEndpoint,
    ProviderKind,
    Sensitivity,
    Tier,
)
from apps.tenants.identity import Identity

REDACTED = "[redacted]"


class EndpointSerializer(serializers.ModelSerializer):
    """An endpoint as its tenant's admins see it (the API key is never returned)."""

    has_api_key = serializers.BooleanField(read_only=True)
    state = serializers.ChoiceField(
        choices=EndpointState.choices,
        read_only=True,
        help_text="Whether the endpoint takes requests now; requests to one that is not "
        "`ready` fail at once with `endpoint_not_ready`. Set by the platform.",
    )
    state_detail = serializers.CharField(
        read_only=True, help_text="Why it is in that state (e.g. the build's progress log)."
    )
    state_changed_at = serializers.DateTimeField(read_only=True, allow_null=True)
    unpriced = serializers.BooleanField(
        read_only=True,
        help_text="Neither both prices nor `is_free` is set: the endpoint is never called, and "
        "a turn that only it could serve fails with `endpoint_unpriced`.",
    )

    class Meta:
        model = ModelEndpoint
        fields = [
            "id",
            *ENDPOINT_EDITABLE_FIELDS,
            "unpriced",
            "has_api_key",
            "state",
            "state_detail",
            "state_changed_at",
            "created_at",
            "updated_at",
        ]


def redact_url(url: str) -> str:
    """`url` without credentials in its authority or anything in its query string."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED if url else ""
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = REDACTED if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class RedactedEndpointSerializer(EndpointSerializer):
    """An endpoint as everyone else sees it (operators, members, viewers, read-only keys).

    `options` may carry secret-bearing provider configuration (extra headers, tokens), and a
    `base_url` may carry credentials or a token in its query: non-admins see which options
    are set, not their values, and the URL without credentials. They may still write both.
    """

    def to_representation(self, instance: ModelEndpoint) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        data["options"] = dict.fromkeys(instance.options or {}, REDACTED)
        data["base_url"] = redact_url(instance.base_url)
        return data


def endpoint_serializer_for(identity: Identity) -> type[EndpointSerializer]:
    return EndpointSerializer if identity.is_admin else RedactedEndpointSerializer


_PRICE_HELP = (
    "Per million {kind} tokens, in the tenant's currency; null for none. An endpoint with "
    "neither both prices nor `is_free` is never called (`endpoint_unpriced`)."
)


class EndpointInputSerializer(StrictInputSerializer):
    name = serializers.SlugField(max_length=100)
    provider = serializers.ChoiceField(choices=ProviderKind.choices)
    model = serializers.CharField(max_length=200)
    base_url = serializers.URLField(required=False, allow_blank=True)
    api_key = serializers.CharField(
        required=False,
        allow_blank=True,
        write_only=True,
        help_text="Stored encrypted; never returned.",
    )
    tier = serializers.ChoiceField(choices=Tier.choices, required=False)
    context_window = serializers.IntegerField(min_value=256, max_value=MAX_TOKENS, required=False)
    supports_tools = serializers.BooleanField(required=False)
    supports_json_schema = serializers.BooleanField(required=False)
    allowed_sensitivities = serializers.ListField(
        child=serializers.ChoiceField(choices=Sensitivity.choices), required=False
    )
    price_input_per_mtok = serializers.DecimalField(
        max_digits=PRICE_WHOLE_DIGITS + PRICE_PLACES,
        decimal_places=PRICE_PLACES,
        min_value=MIN_PRICE_PER_MTOK,
        max_value=MAX_PRICE_PER_MTOK,
        allow_null=True,
        required=False,
        help_text=_PRICE_HELP.format(kind="input"),
    )
    price_output_per_mtok = serializers.DecimalField(
        max_digits=PRICE_WHOLE_DIGITS + PRICE_PLACES,
        decimal_places=PRICE_PLACES,
        min_value=MIN_PRICE_PER_MTOK,
        max_value=MAX_PRICE_PER_MTOK,
        allow_null=True,
        required=False,
        help_text=_PRICE_HELP.format(kind="output"),
    )
    is_free = serializers.BooleanField(
        required=False,
        help_text="Calls cost nothing, and the endpoint has no price. New scripted and local "
        "endpoints without prices are free unless this says otherwise.",
    )
    timeout_s = serializers.FloatField(min_value=0.1, max_value=600, required=False)
    priority = serializers.IntegerField(min_value=-1_000_000, max_value=1_000_000, required=False)
    options = serializers.DictField(
        required=False,
        help_text="Provider options. Only tenant admins read their values back.",
    )
    is_active = serializers.BooleanField(required=False)
