"""Celery tasks: thin wrappers that own only delivery behaviour."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_process_shutdown

from apps.tools import jobs


@shared_task(
    name="tools.run_job",
    acks_late=True,
    reject_on_worker_lost=True,  # a killed worker's job is redelivered (and re-run if idempotent)
    ignore_result=True,
)
def run_tool_job(job_id: str) -> str:
    return jobs.tool_job_run(job_id=job_id)


@shared_task(name="tools.recover_jobs", ignore_result=True)
def recover_tool_jobs() -> int:
    return jobs.tool_jobs_recover()


@worker_process_shutdown.connect
def _close_tool_connections(**_: Any) -> None:
    # Pooled MCP connections own stdio server processes: stop them with the worker process.
    from apps.tools.execution import executor_shutdown

    executor_shutdown()
