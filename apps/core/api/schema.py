"""The OpenAPI contract: what drf-spectacular says about every operation beyond its success.

`WardenAutoSchema` (REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS) adds to every operation the
error answers that the shared machinery gives, all in the one JSON error shape of
apps/core/api/errors.py (`Error`):

- 400 always (a query string holding a NUL is refused on every route; bodies and query
  parameters are validated), 403 and 429 always (permissions and throttles guard every view),
  401 when the operation needs credentials, 404 when its path names an object or it answers
  pages (a page past the last), 413 and 415 when it takes a body, and whatever an
  authentication class declares in `error_statuses` (the OIDC class's 503 when the identity
  provider is unreachable).
- What a view's own services raise (409 conflicts, 503 backpressure, a 404 for an id in the
  body) the view declares with `error_responses(...)` in its `extend_schema(responses=...)`.

Request bodies of `StrictInputSerializer`s say `additionalProperties: false` (a field the
serializer does not know is refused, 400 `unknown_field`) and what else the serializer
enforces beyond drf-spectacular's reading of it (`_tighten`).

Schemathesis checks all of this against the live server (tests/core/test_openapi_contract.py).
"""

from __future__ import annotations

import inspect
from typing import Any

import uritemplate
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from apps.core.api.serializers import NOT_BLANK_PATTERN, StrictInputSerializer, decimal_pattern


class ErrorSerializer(serializers.Serializer):
    """Every API error: `{"code", "message", "details"?}`."""

    code = serializers.CharField(help_text="Stable machine code: clients switch on it.")
    message = serializers.CharField(help_text="For people; may change.")
    details = serializers.JSONField(
        required=False,
        help_text="More about the error: for validation errors, the messages of each field.",
    )

    class Meta:
        ref_name = "Error"


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Bad input: `validation_error` (`details` per field), `unknown_field`, "
    "`malformed_request`, `json_too_deep`, `invalid_characters`, `invalid_input`, or a code "
    "of this operation.",
    401: "No valid credential: `not_authenticated`, `authentication_failed`, "
    "`api_key_expired`, `api_key_revoked`, … (with `WWW-Authenticate`).",
    403: "The credential's role or scope does not allow this: `permission_denied`.",
    404: "No such object in this tenant (another tenant's id too), or a page past the last: "
    "`not_found`.",
    405: "The path does not take this method: `method_not_allowed` (with `Allow`).",
    409: "The object's state does not allow this: a conflict code of this operation.",
    413: "The body is larger than WARDEN_MAX_BODY_BYTES: `payload_too_large`.",
    415: "The body is not JSON: `unsupported_media_type`.",
    429: "Throttled (`throttled`, with `Retry-After`): too many requests, or too many failed "
    "authentications from this address; `rate_limited` (with `Retry-After`): the tenant's or "
    "user's model requests or tokens per minute are used up.",
    502: "An upstream server answered badly: a code of this operation.",
    503: "A dependency can't serve the request now: `identity_provider_unavailable` (the OIDC "
    "issuer can't be reached) or a code of this operation (with `Retry-After` when it is "
    "known when to try again).",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "schema": {"type": "string"},
            "description": "The authentication scheme to use.",
        }
    },
    405: {"Allow": {"schema": {"type": "string"}, "description": "The methods the path takes."}},
    429: {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 1},
            "description": "Seconds to wait before trying again.",
        }
    },
    503: {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 1},
            "description": "Seconds to wait before trying again, when known.",
            "required": False,
        }
    },
}


def error_responses(*statuses: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """Error answers an operation gives besides the shared ones, for `extend_schema(responses=)`:
    `responses={204: None, **error_responses(409)}`. A description replaces the default one:
    `error_responses(409, _409="...")`."""
    return {
        status: OpenApiResponse(
            ErrorSerializer,
            description=descriptions.get(f"_{status}", ERROR_DESCRIPTIONS.get(status, "")),
        )
        for status in statuses
    }


def error_response_object(status: int, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI response object of an error, for operations written by hand (plain Django
    views added by a postprocessing hook). Refers to the `Error` component."""
    response: dict[str, Any] = {
        "description": description or ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status in _HEADERS:
        response["headers"] = dict(_HEADERS[status])
    return response


class WardenAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema with Warden's error answers and strict request bodies."""

    def _default_error_statuses(self) -> set[int]:
        statuses = {400, 403, 429}
        security = self.get_auth()
        if security and {} not in security:
            statuses.add(401)
        for authenticator in self.view.get_authenticators():
            statuses.update(getattr(authenticator, "error_statuses", ()))
        if uritemplate.variables(self.path) or self._pages():
            statuses.add(404)
        if self._get_request_body() is not None:
            statuses.update({413, 415})
        return statuses

    def _pages(self) -> bool:
        """Whether the operation answers a page (a page past the last is a 404)."""
        return self.method == "GET" and self._is_list_view() and bool(self._get_paginator())

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for status in sorted(self._default_error_statuses()):
            if str(status) not in responses:
                responses[str(status)] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status]),
                    str(status),
                    direction=direction,
                )
        for status, headers in _HEADERS.items():
            if str(status) in responses:
                responses[str(status)].setdefault("headers", {}).update(headers)
        return dict(sorted(responses.items()))

    def _map_serializer(
        self, serializer: Any, direction: Any, bypass_extensions: bool = False
    ) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_serializer(serializer, direction, bypass_extensions)
        instance = force_instance(serializer)
        if direction == "request" and isinstance(instance, StrictInputSerializer):
            schema["additionalProperties"] = False
            for name, field in instance.fields.items():
                if name in schema.get("properties", {}):
                    _tighten(field, schema["properties"][name])
            # Not StrictInputSerializer's docstring (it is for us): what the caller needs.
            own = type(instance).__dict__.get("__doc__")
            schema["description"] = "\n\n".join(
                part for part in (inspect.cleandoc(own) if own else "", _STRICT_NOTE) if part
            )
        return schema


_STRICT_NOTE = "Fields not listed here are refused: 400 `unknown_field`."


def _tighten(field: serializers.Field, schema: dict[str, Any]) -> None:
    """Say what DRF's validation adds to drf-spectacular's description of an input field:
    a trimmed string must not be blank, a decimal is written as `decimal_pattern` says, a
    list that may not be empty has an item."""
    if "$ref" in schema or "allOf" in schema:
        return
    if isinstance(field, serializers.DecimalField) and schema.get("type") == "string":
        schema["pattern"] = decimal_pattern(field)
    elif (
        isinstance(field, serializers.CharField)
        and field.trim_whitespace
        and not field.allow_blank
        and "pattern" not in schema
    ):
        schema["pattern"] = NOT_BLANK_PATTERN
    elif isinstance(field, serializers.ListField):
        if not field.allow_empty:
            schema["minItems"] = max(1, schema.get("minItems", 0))
        if isinstance(schema.get("items"), dict):
            _tighten(field.child, schema["items"])
    elif isinstance(field, serializers.DictField) and isinstance(
        schema.get("additionalProperties"), dict
    ):
        _tighten(field.child, schema["additionalProperties"])
