"""Carry the request id from whoever enqueues a task into the task's logs, and redact what a
worker's own log handlers write."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    before_task_publish,
    task_postrun,
    task_prerun,
)

from apps.core.context import current_request_id, request_id_var
from apps.core.logging import RedactFilter

_tokens: dict[str, Any] = {}


@before_task_publish.connect
def _stamp_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and "request_id" not in headers:
        rid = current_request_id()
        if rid:
            headers["request_id"] = rid


@task_prerun.connect
def _restore_request_id(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    rid = getattr(task.request, "request_id", None) if task is not None else None
    if task_id:
        _tokens[task_id] = request_id_var.set(rid or task_id)


@task_postrun.connect
def _clear_request_id(task_id: str | None = None, **_: Any) -> None:
    token = _tokens.pop(task_id or "", None)
    if token is not None:
        request_id_var.reset(token)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_worker_logs(logger: logging.Logger | None = None, **_: Any) -> None:
    # A worker replaces the root logger's handlers with its own (worker_hijack_root_logger):
    # they get the same redaction as the handlers settings.LOGGING configures.
    for handler in logger.handlers if logger is not None else ():
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.addFilter(RedactFilter())
