"""Per-request (or per-task) context carried in contextvars: works under both
sync views, async consumers and Celery tasks."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def clean_request_id(raw: str | None) -> str:
    """Accept a caller's request id if it is safe to log and echo; otherwise make one."""
    if raw and _VALID_REQUEST_ID.match(raw):
        return raw
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()
