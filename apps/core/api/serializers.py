"""Serializer bases shared by every app's API."""

from __future__ import annotations

import copy
import re
from typing import Any

from rest_framework import serializers

# What an `integer` column holds (IntegerField, PositiveIntegerField): every integer an API
# accepts is bounded by this at most, so the database never refuses one with a 500.
PG_INT_MAX = 2_147_483_647
# Token counts: well above any model's context window, far below the column's limit.
MAX_TOKENS = 10_000_000

# What `str.strip()` removes (str.isspace): a trimmed CharField is blank when it holds only
# these. Spelt out because JSON Schema's `\s` (ECMA-262) is a different set.
_PY_WHITESPACE = (
    "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)
# A string that is not blank once trimmed (the OpenAPI schema's `pattern` for such fields).
NOT_BLANK_PATTERN = f"[^{_PY_WHITESPACE}]"


class FieldsBuiltOnce(serializers.ModelSerializer):
    """A ModelSerializer that builds its fields from the model once per class, not per instance.

    DRF's `ModelSerializer.get_fields` introspects the model and builds every field each time a
    serializer is made: ~240 µs of the ~340 µs `POST /turns` spent serializing its one turn.
    Each instance gets a deep copy of the fields built the first time (as DRF copies declared
    fields), so instances share no field objects. Only for serializers whose fields do not
    depend on the instance or the context."""

    def get_fields(self) -> dict[str, serializers.Field]:
        cls = type(self)
        built = cls.__dict__.get("_fields_built")
        if built is None:
            built = super().get_fields()
            cls._fields_built = built  # type: ignore[attr-defined]
        return copy.deepcopy(built)


def decimal_pattern(field: serializers.DecimalField) -> str:
    """The decimal strings `field` takes, as a regular expression (also its schema `pattern`):
    digits, at most `max_digits - decimal_places` before the point and `decimal_places` after,
    a sign only when negative values are allowed, not zero when `min_value` is positive. No
    exponent, no blank. JSON Schema has no `minimum` for a string, so a field that must be
    positive takes the smallest step (1 in its last place) as `min_value`, and a field with an
    upper bound takes it from `max_digits`: then this pattern says exactly what is accepted."""
    whole = (field.max_digits or 30) - (field.decimal_places or 0)
    places = field.decimal_places or 0
    sign = "" if field.min_value is not None and field.min_value >= 0 else "-?"
    positive = "(?!0*(?:\\.0*)?$)" if field.min_value is not None and field.min_value > 0 else ""
    fraction = f"(?:\\.\\d{{1,{places}}})?" if places else ""
    return f"^{positive}{sign}\\d{{1,{whole}}}{fraction}$"


def _json_type_error(field: serializers.Field, value: Any) -> str | None:
    """Why `value`, as JSON decoded it, is not of the JSON type the schema documents for
    `field` (None when it is). DRF would coerce: "5" to 5, 1 to true, 5 to "5", an integer to
    a UUID; the contract says what a client must send, and only that is accepted."""
    if value is None:
        return None  # DRF answers for null (allow_null)
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be true or false."
    if isinstance(field, serializers.IntegerField):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "Must be an integer."
    if isinstance(field, serializers.FloatField):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "Must be a number."
    if isinstance(field, serializers.DecimalField):
        if not isinstance(value, str) or not re.fullmatch(decimal_pattern(field), value):
            return 'Must be a decimal number written as a string, e.g. "2.50".'
        return None
    if isinstance(field, serializers.CharField):
        if not isinstance(value, str):
            return "Must be a string."
        # Checked before DRF trims the value: the schema's maxLength counts what was sent.
        if field.max_length is not None and len(value) > field.max_length:
            return f"Ensure this field has no more than {field.max_length} characters."
        return None
    if isinstance(
        field, serializers.UUIDField | serializers.DateTimeField | serializers.ChoiceField
    ):
        return None if isinstance(value, str) else "Must be a string."
    if isinstance(field, serializers.ListField):
        if not isinstance(value, list):
            return "Must be a list."
        for item in value:
            error = _json_type_error(field.child, item)
            if error:
                return f"Each item: {error}"
        return None
    if isinstance(field, serializers.DictField):
        if not isinstance(value, dict):
            return "Must be an object."
        for item in value.values():
            error = _json_type_error(field.child, item)
            if error:
                return f"Each value: {error}"
        return None
    return None


class StrictInputSerializer(serializers.Serializer):
    """An input serializer that accepts exactly what the API's schema documents.

    It refuses fields it does not know: silently ignoring a misspelt field ("expires" for
    "expires_at") would create something the caller did not ask for; we tell them instead.
    And it refuses values of another JSON type than the field's (see `_json_type_error`).
    The OpenAPI schema says both (apps/core/api/schema.py: `additionalProperties: false`).
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field."] for name in unknown}, code="unknown_field"
                )
            wrong = {
                name: [error]
                for name, field in self.fields.items()
                if name in data and not field.read_only
                for error in [_json_type_error(field, data[name])]
                if error
            }
            if wrong:
                raise serializers.ValidationError(wrong, code="invalid")
        return super().to_internal_value(data)
