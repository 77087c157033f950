"""Celery tasks: thin wrappers that own only delivery behaviour."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_process_shutdown

from apps.tools import jobs, services


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


@shared_task(name=services.DISCOVER_TASK, acks_late=False)
def discover_server(
    server_id: str, tenant_id: str, approve: bool = False, user_id: int | None = None
) -> dict[str, Any]:
    # Not redelivered if the worker dies: the web request that waits for it has given up.
    return services.tool_discover_task_run(
        server_id=server_id, tenant_id=tenant_id, approve=approve, user_id=user_id
    )


@worker_process_shutdown.connect
def _close_tool_connections(**_: Any) -> None:
    # Pooled MCP connections own stdio server processes: stop them with the worker process.
    from apps.tools.execution import executor_shutdown

    executor_shutdown()
