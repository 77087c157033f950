"""HTTP middleware: request ids, body-size admission, and API input/404 guards."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import DataError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from apps.core.context import clean_request_id, request_id_var
from apps.core.jsonlimits import has_unstorable_characters
from apps.core.views import api_not_found

logger = logging.getLogger("warden.request")


class RequestIdMiddleware:
    """Accepts `X-Request-ID` (or makes one), echoes it, and logs the request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = clean_request_id(request.headers.get("X-Request-ID"))
        token = request_id_var.set(request_id)
        request.request_id = request_id  # type: ignore[attr-defined]
        started = time.monotonic()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            logger.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                },
            )
            return response
        finally:
            request_id_var.reset(token)


class ApiBodySizeMiddleware:
    """Refuses oversized API bodies with a JSON 413 before anything reads them.

    Django would raise RequestDataTooBig only when the body is read, and turn it
    into an HTML 400; API clients deserve the real status and a stable code.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if request.path.startswith("/api/") and limit is not None:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                return JsonResponse(
                    {
                        "code": "payload_too_large",
                        "message": f"Request body is {length} bytes; the limit is {limit}.",
                    },
                    status=413,
                )
        return self.get_response(request)


class ApiQueryCharactersMiddleware:
    """Refuses API query strings holding a NUL with a JSON 400 `invalid_characters`.

    A query parameter can reach a text column as a filter, and PostgreSQL refuses NUL
    there with an error that would be a 500. (Django decodes the query string with
    replacement, so lone surrogates cannot occur in it.)
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/") and any(
            has_unstorable_characters(key) or any(has_unstorable_characters(v) for v in values)
            for key, values in request.GET.lists()
        ):
            return JsonResponse(
                {
                    "code": "invalid_characters",
                    "message": "Query parameters may not contain NUL characters.",
                },
                status=400,
            )
        return self.get_response(request)


class ApiNotFoundMiddleware:
    """Every 404 under /api/ is JSON, whatever DEBUG says.

    With DEBUG on, Django answers an unmatched path (an unknown route, or an id that
    fails its path converter) with its technical 404 page, which lists every URL
    pattern; handler404 only runs with DEBUG off. API clients get the same JSON body
    either way. (CommonMiddleware's APPEND_SLASH redirect runs inside this one first.)
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code == 404
            and request.path.startswith("/api/")
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return api_not_found(request)
        return response


class DataErrorMiddleware:
    """A value the database refuses is bad input (400), on every page, not a server error.

    The API's serializers and JSON parser refuse such values first, and the API's
    exception handler maps DataError itself; this covers plain Django views such as the
    console, whose JSON fields accept a NUL escape that PostgreSQL then refuses.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DataError):
            return None
        logger.warning(
            "database refused a value",
            extra={"sqlstate": getattr(exception.__cause__, "sqlstate", None)},
        )
        message = "A value is out of range or contains characters that cannot be stored."
        if request.path.startswith("/api/"):
            return JsonResponse({"code": "invalid_input", "message": message}, status=400)
        return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
