"""The request parsers: JSON for every API view (REST_FRAMEWORK DEFAULT_PARSER_CLASSES), and
multipart forms where a view takes uploads — both refusing what PostgreSQL cannot store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import (  # type: ignore[attr-defined]
    JSONParser,
    MultiPartParser,
    get_encoding,
)

from apps.core.jsonlimits import JsonRefused, json_loads_limited, refuse_unstorable


class LimitedJSONParser(JSONParser):
    """DRF's JSON parser with a nesting-depth limit and no NUL or lone surrogates.

    A malformed body keeps the `malformed_request` code; a body refused for its depth or
    its characters gets `json_too_deep` / `invalid_characters` (see apps.core.jsonlimits).
    """

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        encoding = get_encoding(parser_context or {})
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON parse error - body is not valid {encoding}: {exc}") from exc
        try:
            return json_loads_limited(text, max_depth=settings.WARDEN_MAX_JSON_DEPTH)
        except JsonRefused as exc:
            if exc.code == "invalid_json":
                raise ParseError(exc.message) from exc
            raise ParseError(exc.message, code=exc.code) from exc


class LimitedMultiPartParser(MultiPartParser):
    """DRF's multipart parser whose form fields (names and values) are refused with
    `invalid_characters` when they hold a NUL or a lone surrogate, as in a JSON body: the
    same input gets the same answer whichever way it is sent. Files are not text here."""

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        parsed = super().parse(stream, media_type, parser_context)
        try:
            refuse_unstorable({key: parsed.data.getlist(key) for key in parsed.data})
        except JsonRefused as exc:
            raise ParseError(exc.message, code=exc.code) from exc
        return parsed
