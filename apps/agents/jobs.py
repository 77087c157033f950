"""Long-running tool calls: each runs as its own Celery job while its turn waits.

    toolbox ── creates ToolJob(queued), raises ToolJobPending
    orchestrator ── parks the turn (waiting, outcome "waiting_tool", `turn.waiting`),
                    then dispatches the job (so it can never requeue a turn not parked yet)
    tools.run_job ── runs the tool, `tool.progress` events while it runs, writes the finished
                    action-graph node and its `tool.result`, sets the turn back to queued
    agents.run_turn ── the loop replays the finished node instead of calling the tool again

The turn holds no worker while the tool runs. A job is run by one worker at a time (a
Postgres advisory lock keyed by the job, apps.core.locks); a job whose worker died mid-call is
re-run only if the tool is idempotent, like an interrupted call in the loop itself.

A job belongs to its turn, so it lives here with the turns (it was apps.tools' until the
layers were made one-way): apps.tools resolves and runs tools and knows nothing of turns.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from opentelemetry import context as otel_context

from apps.agents import services as agent_services
from apps.agents.events import event_record
from apps.agents.models import ActionNode, ToolJob, ToolJobStatus, Turn, TurnStatus
from apps.agents.runtime.loop import LoopConfig, jsonable, observation_text
from apps.agents.runtime.ports import ToolResult
from apps.core import telemetry
from apps.core.locks import LockNamespace, advisory_lock
from apps.core.telemetry import current_trace_id, step_span
from apps.tools.execution import (
    ResolvedTool,
    failure_outcome,
    outcome_error_text,
    resolve_tools,
    tool_call,
)
from apps.tools.executors.base import ToolOutcome, progress_reporter

logger = logging.getLogger("warden.agents")

# Celery task names. They were defined in apps.tools and kept their names when the jobs moved
# here, so messages already queued (and beat's schedule) still find them.
RUN_TOOL_JOB_TASK = "tools.run_job"
RECOVER_TOOL_JOBS_TASK = "tools.recover_jobs"

WAITING_OUTCOME = "waiting_tool"
# A chatty tool must not flood the session stream: past this many progress events per job,
# only the last report is written (when the call ends).
MAX_PROGRESS_EVENTS = 100
_FINISHED = (ToolJobStatus.COMPLETED, ToolJobStatus.FAILED)


def tool_job_create(
    *, turn: Turn, node_id: str, tool: ResolvedTool, arguments: Mapping[str, Any]
) -> ToolJob:
    """The job for this call (the same one again when a resumed loop asks twice)."""
    job, _ = ToolJob.objects.get_or_create(
        turn=turn,
        node_id=node_id,
        defaults={
            "tenant_id": turn.tenant_id,
            "tool": tool.row,
            "tool_name": tool.name,
            "arguments": dict(arguments),
        },
    )
    return job


def tool_job_dispatch(*, job_id: uuid.UUID | str) -> None:
    """Hand the job to a worker. A broker outage leaves it queued; recovery re-dispatches."""
    try:
        # By name (apps.agents.tasks registers it): that module imports this one.
        current_app.tasks[RUN_TOOL_JOB_TASK].apply_async(args=[str(job_id)])
    except Exception:
        logger.exception("could not dispatch tool job", extra={"job_id": str(job_id)})


def tool_job_run(*, job_id: uuid.UUID | str) -> str:
    """Run (or finish what a dead worker left of) one job; returns what happened."""
    job = ToolJob.objects.filter(id=job_id).first()
    if job is None:
        return "missing"
    # The lock dies with the worker's connection, so a redelivered job can tell "still
    # running" from "died". Its own namespace: a job never blocks a session, nor the reverse.
    with advisory_lock(LockNamespace.TOOL_JOB, job.id) as held:
        if not held:
            return "busy"
        return _run_locked(job)


def _run_locked(job: ToolJob) -> str:
    job.refresh_from_db()
    turn = Turn.objects.select_related("session").get(id=job.turn_id)
    if job.status in _FINISHED:
        _turn_resume(turn)  # the worker may have died between finishing and requeueing
        return str(job.status)
    if turn.status != TurnStatus.WAITING:
        # Cancelled (or failed) while the job waited for a worker: nobody wants the result.
        ToolJob.objects.filter(id=job.id).update(
            status=ToolJobStatus.FAILED,
            error=f"the turn is {turn.status}; the tool was not run",
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
        return "abandoned"
    resolved = resolve_tools(tenant_id=job.tenant_id, names=[job.tool_name]).get(job.tool_name)
    if job.status == ToolJobStatus.RUNNING and not (resolved and resolved.definition.idempotent):
        outcome = failure_outcome(
            "non_idempotent_tool_interrupted",
            f"the job running {job.tool_name} was interrupted and the tool is not idempotent; "
            "it was not run again",
        )
    elif resolved is None:
        outcome = failure_outcome(
            "tool_unavailable",
            f"tool {job.tool_name!r} was disabled or removed while the turn waited",
        )
    else:
        ToolJob.objects.filter(id=job.id).update(
            status=ToolJobStatus.RUNNING,
            attempts=F("attempts") + 1,
            started_at=timezone.now(),
            updated_at=timezone.now(),
        )
        with step_span(
            "tool_call",
            name=f"execute_tool {job.tool_name}",
            attributes={
                telemetry.GEN_AI_OPERATION: "execute_tool",
                telemetry.GEN_AI_TOOL_NAME: job.tool_name,
                telemetry.GEN_AI_TOOL_TYPE: "function",
                "warden.tenant.id": str(job.tenant_id),
                "warden.session.id": str(turn.session_id),
                "warden.turn.id": str(turn.id),
                "warden.node.id": job.node_id,
                "warden.tool.job_id": str(job.id),
            },
        ) as span:
            outcome = _run_with_progress(job, turn, resolved)
            if not outcome.ok:
                span.fail(outcome.error_code or "tool_error")
    _finish(job, turn, outcome)
    return "completed" if outcome.ok else "failed"


def _run_with_progress(job: ToolJob, turn: Turn, resolved: ResolvedTool) -> ToolOutcome:
    writer = _ProgressWriter(job, turn)
    writer.write(None)  # "running": the stream learns the job has a worker now
    writer.start()
    token = progress_reporter.set(writer.report)
    try:
        return tool_call(
            resolved,
            job.arguments,
            tenant_id=str(job.tenant_id),
            session_id=str(turn.session_id),
            turn_id=str(turn.id),
            idempotency_key=job.node_id,
        )
    finally:
        progress_reporter.reset(token)
        writer.close()


class _ProgressWriter:
    """Turns progress reports into `tool.progress` events.

    Reports arrive on the builtin executor's threads or on the MCP pool's event loop, which
    must not wait for the database: they only enqueue, and this thread writes.
    """

    _STOP = object()

    def __init__(self, job: ToolJob, turn: Turn) -> None:
        self.job, self.turn = job, turn
        self.queue: queue.Queue[Any] = queue.Queue()
        self.written = 0
        self.last: tuple[float, float | None, str | None] | None = None
        self.thread = threading.Thread(target=self._drain, name="warden-tool-progress")
        # Its events carry the job's trace id: the trace context (and nothing else of this
        # thread's context: the database connection is per thread) goes with it.
        self.trace_context = otel_context.get_current()

    def start(self) -> None:
        self.thread.start()

    def report(self, progress: float, total: float | None, message: str | None) -> None:
        self.queue.put_nowait((progress, total, message))

    def close(self) -> None:
        self.queue.put(self._STOP)
        self.thread.join()

    def _drain(self) -> None:
        otel_context.attach(self.trace_context)
        try:
            while (item := self.queue.get()) is not self._STOP:
                self.last = item
                if self.written < MAX_PROGRESS_EVENTS:
                    self.write(item)
            if self.written >= MAX_PROGRESS_EVENTS and self.last is not None:
                self.write(self.last)
        except Exception:
            logger.exception("writing tool progress failed", extra={"job_id": str(self.job.id)})
        finally:
            connection.close()  # this thread's own connection

    def write(self, item: tuple[float, float | None, str | None] | None) -> None:
        progress, total, message = item if item is not None else (None, None, None)
        payload = {
            "turn_id": str(self.turn.id),
            "node_id": self.job.node_id,
            "job_id": str(self.job.id),
            "tool": self.job.tool_name,
            "status": "running",
            "progress": progress,
            "total": total,
            "message": (message or "")[:500],
        }
        with transaction.atomic():
            if item is not None:
                ToolJob.objects.filter(id=self.job.id).update(
                    progress=progress,
                    progress_total=total,
                    progress_message=(message or "")[:500],
                    updated_at=timezone.now(),
                )
            event_record(
                session=self.turn.session, turn=self.turn, event="tool.progress", data=payload
            )
        self.written += 1


def _finish(job: ToolJob, turn: Turn, outcome: ToolOutcome) -> None:
    output = jsonable(outcome.content) if outcome.ok else None
    error = None if outcome.ok else outcome_error_text(outcome)
    status = "completed" if outcome.ok else "error"
    latency_ms = round(outcome.latency_ms)
    with transaction.atomic():
        node = ActionNode.objects.select_for_update().get(turn_id=turn.id, node_id=job.node_id)
        node.status = status
        node.outputs = {
            **node.outputs,
            "ok": outcome.ok,
            "output": output,
            "error": error,
            # What the loop itself would have made of the result: the resumed turn
            # replays this text.
            "observation": observation_text(
                ToolResult(ok=outcome.ok, output=output, error=error),
                output,
                limit=LoopConfig().max_observation_chars,
            ),
            "job_id": str(job.id),
        }
        node.latency_ms = latency_ms
        node.trace_id = current_trace_id()
        node.save(update_fields=["status", "outputs", "latency_ms", "trace_id", "updated_at"])
        ToolJob.objects.filter(id=job.id).update(
            status=ToolJobStatus.COMPLETED if outcome.ok else ToolJobStatus.FAILED,
            error=error or "",
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
        event_record(
            session=turn.session,
            turn=turn,
            event="tool.result",
            data={
                "turn_id": str(turn.id),
                "node_id": job.node_id,
                "tool": job.tool_name,
                "ok": outcome.ok,
                "status": status,
                "output": output,
                "error": error,
                "latency_ms": latency_ms,
                "job_id": str(job.id),
            },
        )
        _turn_resume(turn)


def _turn_resume(turn: Turn) -> None:
    """Put a turn parked on a tool job back in the queue, once."""
    with transaction.atomic():
        locked = Turn.objects.select_for_update().get(id=turn.id)
        if locked.status != TurnStatus.WAITING or locked.outcome != WAITING_OUTCOME:
            return
        locked.status = TurnStatus.QUEUED
        locked.outcome = ""
        locked.detail = ""
        locked.save(update_fields=["status", "outcome", "detail", "updated_at"])
        # Looked up at call time so tests can keep turns away from workers.
        transaction.on_commit(lambda: agent_services.turn_dispatch(turn_id=locked.id))


def tool_jobs_recover() -> int:
    """Re-dispatch unfinished jobs of waiting turns that no worker seems to be running
    (lost dispatch, dead worker). Safe to over-dispatch: a job runs under its lock."""
    stale = timezone.now() - timedelta(seconds=settings.WARDEN_TURN_STALE_SECONDS)
    jobs = ToolJob.objects.filter(
        status__in=[ToolJobStatus.QUEUED, ToolJobStatus.RUNNING],
        updated_at__lt=stale,
        turn__status=TurnStatus.WAITING,
    ).values_list("id", flat=True)
    count = 0
    for job_id in jobs:
        tool_job_dispatch(job_id=job_id)
        count += 1
    return count
