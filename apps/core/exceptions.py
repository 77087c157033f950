"""Domain errors. Services raise these; only api/errors.py maps them to HTTP."""

from __future__ import annotations

from typing import Any


class WardenError(Exception):
    """Base of every domain error: a stable machine code and a human message."""

    code = "error"

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
