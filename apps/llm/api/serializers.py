from __future__ import annotations

from rest_framework import serializers

from apps.core.api.serializers import MAX_TOKENS, StrictInputSerializer
from apps.llm.models import ENDPOINT_EDITABLE_FIELDS, ModelEndpoint, ProviderKind, Sensitivity, Tier


class EndpointSerializer(serializers.ModelSerializer):
    has_api_key = serializers.BooleanField(read_only=True)

    class Meta:
        model = ModelEndpoint
        fields = ["id", *ENDPOINT_EDITABLE_FIELDS, "has_api_key", "created_at", "updated_at"]


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
        max_digits=12, decimal_places=4, min_value=0, required=False
    )
    price_output_per_mtok = serializers.DecimalField(
        max_digits=12, decimal_places=4, min_value=0, required=False
    )
    timeout_s = serializers.FloatField(min_value=0.1, max_value=600, required=False)
    priority = serializers.IntegerField(min_value=-1_000_000, max_value=1_000_000, required=False)
    options = serializers.DictField(required=False)
    is_active = serializers.BooleanField(required=False)
