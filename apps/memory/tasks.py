"""Celery tasks: thin wrappers that own only delivery behaviour."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from apps.memory import services
from apps.memory.models import DocumentState

# Waits between tries while the embedder is down: 10 s doubling up to 10 minutes, for about a
# day; after that the document stays `waiting` until `manage.py memory resume`.
RETRY_BASE_S = 10
RETRY_CAP_S = 600
MAX_RETRIES = 150


@shared_task(name=services.EMBED_TASK, bind=True, acks_late=True, max_retries=MAX_RETRIES)
def document_embed(self: Any, document_id: str) -> str | None:
    state = services.document_embed_task_run(document_id=document_id)
    if state == DocumentState.WAITING:
        raise self.retry(countdown=min(RETRY_CAP_S, RETRY_BASE_S * 2**self.request.retries))
    return state
