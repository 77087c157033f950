"""Celery tasks: thin wrappers that own only delivery behaviour."""

from __future__ import annotations

from celery import shared_task

from apps.agents import approval_flow, jobs, orchestrator
from apps.agents.services import RUN_TURN_TASK
from apps.approvals.services import APPROVAL_DECIDED_TASK


@shared_task(
    name=RUN_TURN_TASK,
    acks_late=True,
    reject_on_worker_lost=True,  # a killed worker's turn is redelivered and resumed
    ignore_result=True,
)
def run_turn(turn_id: str, session_id: str | None = None, tenant_id: str | None = None) -> str:
    # session_id, then tenant_id: each sent since a release (a task queued by an earlier one
    # has fewer arguments, and runs as it did)
    return orchestrator.turn_execute(turn_id=turn_id, session_id=session_id, tenant_id=tenant_id)


@shared_task(name="agents.recover_turns", ignore_result=True)
def recover_turns() -> int:
    return orchestrator.turns_recover()


@shared_task(
    name=jobs.RUN_TOOL_JOB_TASK,  # "tools.run_job": the name it had in apps.tools
    acks_late=True,
    reject_on_worker_lost=True,  # a killed worker's job is redelivered (and re-run if idempotent)
    ignore_result=True,
)
def run_tool_job(job_id: str) -> str:
    return jobs.tool_job_run(job_id=job_id)


@shared_task(name=jobs.RECOVER_TOOL_JOBS_TASK, ignore_result=True)  # "tools.recover_jobs"
def recover_tool_jobs() -> int:
    return jobs.tool_jobs_recover()


@shared_task(
    name=APPROVAL_DECIDED_TASK,  # "agents.approval_decided", enqueued by apps.approvals
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def approval_decided(approval_id: str) -> str:
    return approval_flow.turn_resume_on_decision(approval_id=approval_id)
