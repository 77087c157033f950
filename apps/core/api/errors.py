"""One JSON error shape for every API failure: {"code", "message", "details"?}.

`code` is stable (clients switch on it); `message` is for humans. A bug is a 500
with the request id, never a stack trace.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DataError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

from apps.core import exceptions as domain
from apps.core.context import current_request_id

logger = logging.getLogger("warden.api")

_DOMAIN_STATUS: list[tuple[type[domain.WardenError], int]] = [
    (domain.NotFound, 404),
    (domain.Conflict, 409),
    (domain.Forbidden, 403),
    (domain.InvalidInput, 400),
    (domain.Unavailable, 503),
    (domain.TooManyRequests, 429),
]

_DRF_CODES: dict[type[drf.APIException], str] = {
    drf.ParseError: "malformed_request",
    drf.NotAuthenticated: "not_authenticated",
    drf.AuthenticationFailed: "authentication_failed",
    drf.PermissionDenied: "permission_denied",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.NotAcceptable: "not_acceptable",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.Throttled: "throttled",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return body


def _first_message(detail: Any) -> str:
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        inner = _first_message(value)
        return inner if key == "non_field_errors" else f"{key}: {inner}"
    return str(detail)


def _has_code(codes: Any, wanted: str) -> bool:
    if isinstance(codes, dict):
        return any(_has_code(v, wanted) for v in codes.values())
    if isinstance(codes, list):
        return any(_has_code(v, wanted) for v in codes)
    return codes == wanted


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, domain.WardenError):
        status = next((s for cls, s in _DOMAIN_STATUS if isinstance(exc, cls)), 400)
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return Response(
            error_body(exc.code, exc.message, exc.details), status=status, headers=headers
        )
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return Response(error_body("payload_too_large", "Request body too large."), status=413)
    elif isinstance(exc, DataError):
        # The database refused a value (a number beyond its column, a character it cannot
        # store). Serializers bound every field; reaching this means one was missed: the
        # caller still sent bad input, so a 400 — with nothing of the database's message.
        # Log the SQLSTATE only: the database's message may quote the value.
        logger.warning(
            "database refused a value", extra={"sqlstate": getattr(exc.__cause__, "sqlstate", None)}
        )
        return Response(
            error_body(
                "invalid_input",
                "A value is out of range or contains characters that cannot be stored.",
            ),
            status=400,
        )

    if isinstance(exc, drf.ValidationError):
        code = (
            "unknown_field" if _has_code(exc.get_codes(), "unknown_field") else "validation_error"
        )
        return Response(
            error_body(code, _first_message(exc.detail), exc.detail), status=exc.status_code
        )
    if isinstance(exc, drf.APIException):
        detail_code = getattr(exc.detail, "code", None)
        code = next(
            (c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)),
            str(detail_code or exc.default_code),
        )
        sharper = detail_code not in (None, exc.default_code)
        if isinstance(exc, drf.ParseError | drf.MethodNotAllowed) and sharper:
            # The JSON parser says sharper what it refused ("json_too_deep", ...); a view
            # why it takes no such method ("use_invitations").
            code, message = str(detail_code), str(exc.detail)
        elif isinstance(exc, drf.ParseError):
            message = f"Malformed request body: {exc.detail}"
        else:
            message = str(exc.detail)
        # An authentication class may give a sharper code ("api_key_expired", ...).
        if isinstance(exc, drf.AuthenticationFailed | drf.NotAuthenticated) and detail_code not in (
            None,
            "authentication_failed",
            "not_authenticated",
        ):
            code = str(detail_code)
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        wait = getattr(exc, "wait", None)
        if isinstance(exc, drf.Throttled) and wait:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return Response(error_body(code, message), status=exc.status_code, headers=headers)

    logger.exception("unhandled API error")
    return Response(
        error_body("internal_error", f"Internal error (request id {current_request_id()})."),
        status=500,
    )
