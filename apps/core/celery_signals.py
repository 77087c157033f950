"""Carry the request id from whoever enqueues a task into the task's logs."""

from __future__ import annotations

from typing import Any

from celery.signals import before_task_publish, task_postrun, task_prerun

from apps.core.context import current_request_id, request_id_var

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
