"""Domain errors. Services raise these; only api/errors.py maps them to HTTP."""

from __future__ import annotations

from typing import Any


class WardenError(Exception):
    """Base of every domain error: a stable machine code and a human message."""

    code = "error"
    # Seconds after which trying again may succeed; the API sends it as `Retry-After`.
    retry_after: float | None = None

    def __init__(
        self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}


class NotFound(WardenError):
    code = "not_found"


class Conflict(WardenError):
    code = "conflict"


class Forbidden(WardenError):
    code = "permission_denied"


class InvalidInput(WardenError):
    code = "invalid_input"


class Unavailable(WardenError):
    """A dependency (queue, policy engine, provider) can't serve the request now."""

    code = "unavailable"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.retry_after = retry_after


class TooManyRequests(WardenError):
    """A limit on how much may run per unit of time is used up (requests or tokens per
    minute); `retry_after` says when the window ends."""

    code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.retry_after = retry_after
