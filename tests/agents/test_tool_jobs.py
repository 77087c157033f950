"""Long-running tools: the turn parks, the tool runs as its own job with progress events, the
turn resumes and replays the finished node. In-process first, then with a real worker."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from apps.agents import jobs, orchestrator, services
from apps.agents.demo import seed_demo_agents
from apps.agents.models import (
    ActionNode,
    Agent,
    SessionEvent,
    ToolJob,
    ToolJobStatus,
    Turn,
    TurnStatus,
)
from apps.tools import services as tool_services
from tests.agents.conftest import make_agent, make_session, wait_for_turn
from tests.conftest import WorkerProcess, World
from tests.tools_django.conftest import secure_server_factory

__all__ = ["secure_server_factory"]  # the tools' fixture: a real MCP server with progress

pytestmark = pytest.mark.django_db(transaction=True)

FINISHED = ("completed", "failed", "cancelled")


def long_running_agent(world: World, steps: int = 3) -> Agent:
    tool = tool_services.tool_register_builtin(tenant=world.tenant_a, name="count_up")
    tool_services.tool_update(tool=tool, enabled=True, long_running=True)
    script: list[dict[str, Any]] = [
        {"tool": "count_up", "arguments": {"steps": steps}, "say": "This takes a while."},
        {"final": "Done: ${tool_result_1}"},
    ]
    return make_agent(world.tenant_a, script, tools=["count_up"])


def event_types(turn: Turn) -> list[str]:
    return list(
        SessionEvent.objects.filter(turn=turn).order_by("id").values_list("type", flat=True)
    )


@pytest.mark.usefixtures("no_dispatch")
def test_long_running_tool_parks_the_turn_and_resumes_it(
    world: World, jobs_dispatched: list[str], no_dispatch: list[str]
) -> None:
    agent = long_running_agent(world)
    turn = services.turn_enqueue(session=make_session(agent), message="count")
    no_dispatch.clear()

    assert orchestrator.turn_execute(turn_id=turn.id) == "waiting"
    turn.refresh_from_db()
    assert (turn.status, turn.outcome) == (TurnStatus.WAITING, "waiting_tool")
    job = ToolJob.objects.get(turn=turn)
    assert jobs_dispatched == [str(job.id)] and job.status == ToolJobStatus.QUEUED
    node = ActionNode.objects.get(turn=turn, kind="tool_call")
    assert node.status == "started"
    waiting = SessionEvent.objects.get(turn=turn, type="turn.waiting").payload
    assert waiting["job_id"] == str(job.id) and waiting["tool"] == "count_up"
    # The worker is free: re-delivering the turn now does nothing.
    assert orchestrator.turn_execute(turn_id=turn.id) == "waiting"

    assert jobs.tool_job_run(job_id=job.id) == "completed"
    job.refresh_from_db()
    assert job.status == ToolJobStatus.COMPLETED and job.attempts == 1
    assert (job.progress, job.progress_total) == (3, 3)
    progress = [
        e.payload
        for e in SessionEvent.objects.filter(turn=turn, type="tool.progress").order_by("id")
    ]
    assert [p["progress"] for p in progress] == [None, 1, 2, 3]
    assert progress[-1]["message"] == "step 3 of 3"
    node.refresh_from_db()
    assert node.status == "completed" and node.outputs["output"]["counted"] == 3
    turn.refresh_from_db()
    assert turn.status == TurnStatus.QUEUED and no_dispatch == [str(turn.id)]
    # A redelivered job finds its work done.
    assert jobs.tool_job_run(job_id=job.id) == "completed"

    assert orchestrator.turn_execute(turn_id=turn.id) == "completed"
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED, turn.detail
    assert '"counted": 3' in turn.final_answer
    kinds = event_types(turn)
    # One call, one result: the resumed loop replayed the node instead of running it again.
    assert kinds.count("tool.call") == 1 and kinds.count("tool.result") == 1
    assert kinds.index("tool.call") < kinds.index("turn.waiting")
    assert kinds.index("turn.waiting") < kinds.index("tool.progress") < kinds.index("tool.result")
    assert kinds.index("tool.result") < kinds.index("turn.completed")


@pytest.mark.usefixtures("no_dispatch")
def test_job_of_a_cancelled_turn_does_not_run(world: World, jobs_dispatched: list[str]) -> None:
    agent = long_running_agent(world)
    turn = services.turn_enqueue(session=make_session(agent), message="count")
    orchestrator.turn_execute(turn_id=turn.id)
    services.turn_cancel(turn=Turn.objects.get(id=turn.id))
    job = ToolJob.objects.get(turn=turn)
    assert jobs.tool_job_run(job_id=job.id) == "abandoned"
    job.refresh_from_db()
    assert job.status == ToolJobStatus.FAILED and not job.attempts
    assert Turn.objects.get(id=turn.id).status == TurnStatus.CANCELLED


@pytest.mark.usefixtures("no_dispatch")
def test_recovery_redispatches_jobs_nobody_runs(world: World, jobs_dispatched: list[str]) -> None:
    agent = long_running_agent(world)
    turn = services.turn_enqueue(session=make_session(agent), message="count")
    orchestrator.turn_execute(turn_id=turn.id)
    job = ToolJob.objects.get(turn=turn)
    jobs_dispatched.clear()
    assert jobs.tool_jobs_recover() == 0  # just dispatched: not stale yet
    stale = timezone.now() - timedelta(seconds=django_settings.WARDEN_TURN_STALE_SECONDS + 1)
    ToolJob.objects.filter(id=job.id).update(updated_at=stale)
    assert jobs.tool_jobs_recover() == 1 and jobs_dispatched == [str(job.id)]


@pytest.mark.usefixtures("no_dispatch")
def test_interrupted_job_of_a_non_idempotent_tool_is_not_rerun(
    world: World, jobs_dispatched: list[str], tmp_path: Path
) -> None:
    tool = tool_services.tool_register_builtin(tenant=world.tenant_a, name="append_line")
    tool_services.tool_update(tool=tool, enabled=True, long_running=True)
    target = tmp_path / "lines.txt"
    script: list[dict[str, Any]] = [
        {"tool": "append_line", "arguments": {"path": str(target), "text": "once"}},
        {"final": "${tool_result_1}"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["append_line"])
    turn = services.turn_enqueue(session=make_session(agent), message="go")
    orchestrator.turn_execute(turn_id=turn.id)
    job = ToolJob.objects.get(turn=turn)
    # As a worker that died mid-call leaves it.
    ToolJob.objects.filter(id=job.id).update(status=ToolJobStatus.RUNNING, attempts=1)

    assert jobs.tool_job_run(job_id=job.id) == "failed"
    assert not target.exists()
    node = ActionNode.objects.get(turn=turn, kind="tool_call")
    assert node.status == "error"
    assert node.outputs["error"].startswith("non_idempotent_tool_interrupted: ")
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED
    assert "non_idempotent_tool_interrupted" in turn.final_answer


@pytest.mark.usefixtures("no_dispatch")
def test_mcp_progress_notifications_become_progress_events(
    world: World, jobs_dispatched: list[str], secure_server_factory: Any
) -> None:
    server = secure_server_factory(tenant_id=str(world.tenant_a.id), resource="mcp:slow")
    row = tool_services.mcp_server_save(
        tenant=world.tenant_a, name="slow", transport="streamable_http", url=server.url
    )
    tool_services.tool_discover(server=row, approve=True)
    countdown = row.tools.get(remote_name="countdown")
    # medium: the default policy would send a high-risk call (discovery's suggestion) to approval
    tool_services.tool_update(tool=countdown, long_running=True, risk_tier="medium")
    script: list[dict[str, Any]] = [
        {"tool": "countdown", "arguments": {"steps": 2}},
        {"final": "${tool_result_1}"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["countdown"])
    turn = services.turn_enqueue(session=make_session(agent), message="go")
    orchestrator.turn_execute(turn_id=turn.id)

    job = ToolJob.objects.get(turn=turn)
    assert jobs.tool_job_run(job_id=job.id) == "completed"
    messages = [
        e.payload["message"]
        for e in SessionEvent.objects.filter(turn=turn, type="tool.progress").order_by("id")
    ]
    assert messages == ["", "1 to go", "0 to go"]
    orchestrator.turn_execute(turn_id=turn.id)
    assert Turn.objects.get(id=turn.id).final_answer == '{"result": "liftoff"}'


@pytest.mark.worker
def test_long_running_tool_with_a_real_worker(world: World, celery_worker: WorkerProcess) -> None:
    agent = long_running_agent(world, steps=4)
    turn = services.turn_enqueue(session=make_session(agent), message="count")
    turn = wait_for_turn(turn, statuses=FINISHED)

    assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
    assert '"counted": 4' in turn.final_answer
    job = ToolJob.objects.get(turn=turn)
    assert job.status == ToolJobStatus.COMPLETED and job.attempts == 1
    output = ActionNode.objects.get(turn=turn, kind="tool_call").outputs["output"]
    assert output["pid"] != os.getpid()  # ran in the worker
    kinds = event_types(turn)
    assert kinds.count("tool.progress") == 5 and kinds.count("tool.call") == 1
    assert kinds.index("turn.waiting") < kinds.index("tool.result") < kinds.index("turn.completed")
    assert kinds.count("turn.started") == 2  # once, then again after the job requeued it


@pytest.mark.worker
def test_demo_agent_with_a_real_worker(world: World, celery_worker: WorkerProcess) -> None:
    # The worker shares the test settings' workspace root, where the demo repository goes.
    seed_demo_agents(tenant=world.tenant_a)
    agent = Agent.objects.get(tenant=world.tenant_a, slug="demo-scripted")
    turn = services.turn_enqueue(session=make_session(agent, world.alice), message="one two three")
    turn = wait_for_turn(turn, statuses=FINISHED)

    assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
    nodes = ActionNode.objects.filter(turn=turn, kind="tool_call").order_by("position")
    assert [(n.inputs["tool"], n.status) for n in nodes] == [
        ("memory_search", "completed"),
        ("get_current_time", "completed"),
        ("word_count", "completed"),
    ]
    assert '{"words": 3}' in turn.final_answer
