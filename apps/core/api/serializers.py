"""Serializer bases shared by every app's API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

# What an `integer` column holds (IntegerField, PositiveIntegerField): every integer an API
# accepts is bounded by this at most, so the database never refuses one with a 500.
PG_INT_MAX = 2_147_483_647
# Token counts: well above any model's context window, far below the column's limit.
MAX_TOKENS = 10_000_000


class StrictInputSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not know.

    Silently ignoring a misspelt field ("expires" for "expires_at") would create
    something the caller did not ask for; we tell them instead.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field."] for name in unknown}, code="unknown_field"
                )
        return super().to_internal_value(data)
