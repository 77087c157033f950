"""Celery tasks: thin wrappers that own only delivery behaviour.

Slack calls retry with backoff when Slack is down or rate-limits (a Slack outage delays a
card, never a decision: the console and the API work without it); an error Slack will give
again (a channel that does not exist, a revoked token) is logged once and dropped."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Task, shared_task
from slack_sdk.errors import SlackApiError, SlackClientError

from apps.approvals import services, slack

logger = logging.getLogger("warden.approvals")

MAX_RETRIES = 8


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 0) or 0
        return status == 429 or status >= 500
    return isinstance(exc, SlackClientError | OSError)


def _with_retries(task: Task, work: Callable[[], Any]) -> Any:
    try:
        return work()
    except Exception as exc:
        if not _retryable(exc):
            logger.warning("slack call failed", extra={"task": task.name, "error": str(exc)})
            return "failed"
        # 2, 4, 8 … seconds, at most 5 minutes.
        countdown = min(300, 2 ** (task.request.retries + 1))
        raise task.retry(exc=exc, countdown=countdown, max_retries=MAX_RETRIES) from exc


@shared_task(bind=True, name=services.SLACK_POST_TASK, ignore_result=True)
def slack_post(self: Task, approval_id: str) -> Any:
    return _with_retries(self, lambda: services.approval_slack_post(approval_id=approval_id))


@shared_task(bind=True, name=services.SLACK_UPDATE_TASK, ignore_result=True)
def slack_update(self: Task, approval_id: str) -> Any:
    return _with_retries(self, lambda: services.approval_slack_update(approval_id=approval_id))


@shared_task(bind=True, name=services.SLACK_TELL_TASK, ignore_result=True)
def slack_tell(self: Task, channel: str, user: str, text: str) -> Any:
    if not (slack.enabled() and channel and user):
        return "skipped"
    return _with_retries(self, lambda: slack.tell(channel=channel, user=user, text=text))


@shared_task(name=services.EXPIRE_TASK, ignore_result=True)
def expire() -> int:
    return services.approvals_expire()
