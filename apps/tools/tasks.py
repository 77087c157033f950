"""Celery tasks: thin wrappers that own only delivery behaviour."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_process_shutdown

from apps.tools import services
from apps.tools.execution import executor_shutdown


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
    executor_shutdown()
