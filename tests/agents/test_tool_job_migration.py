"""ToolJob moved from apps.tools to apps.agents (tools 0003, agents 0003) without moving a row:
a job written by the previous release is read, whole, by this one.

The migrations are run by hand on the suite's test database: back to the state before the
move, a job inserted through the historical model, forward again to the latest state. The
`finally` puts the schema back where every other test expects it, whatever happened.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.agents.models import ToolJob, ToolJobStatus

pytestmark = pytest.mark.django_db(transaction=True)

MOVED_BY = {"agents": "0002_initial", "tools": "0002_stdio_templates"}

Node = tuple[str, str]


def migrate(targets: list[Node] | None = None) -> MigrationExecutor:
    executor = MigrationExecutor(connection)  # a fresh loader: it sees what is applied now
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return executor


def before_the_move_targets() -> list[Node]:
    """The latest migration of every app, but agents and tools just before the move."""
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    return [(app, MOVED_BY.get(app, name)) for app, name in leaves]


@pytest.fixture
def before_the_move() -> Iterator[tuple[MigrationExecutor, list[Node]]]:
    targets = before_the_move_targets()
    try:
        yield migrate(targets), targets
    finally:
        migrate()  # the latest state again, for the rest of the suite


def test_a_tool_job_written_before_the_move_is_read_after_it(
    before_the_move: tuple[MigrationExecutor, list[Node]],
) -> None:
    executor, targets = before_the_move
    state = executor.loader.project_state(targets)
    assert ("tools", "tooljob") in state.models and ("agents", "tooljob") not in state.models
    old = state.apps
    content_type = old.get_model("contenttypes", "ContentType").objects.get(model="tooljob")
    assert content_type.app_label == "tools"  # moved back by the reverse migration

    tenant = old.get_model("tenants", "Tenant").objects.create(name="Acme", slug="acme")
    agent = old.get_model("agents", "Agent").objects.create(
        tenant=tenant, name="A", slug="a", data_sensitivity="internal"
    )
    session = old.get_model("agents", "AgentSession").objects.create(
        tenant=tenant, agent=agent, data_sensitivity="internal"
    )
    turn = old.get_model("agents", "Turn").objects.create(
        tenant=tenant, session=session, seq=1, user_message="count", status="waiting"
    )
    tool = old.get_model("tools", "Tool").objects.create(
        tenant=tenant, name="count_up", remote_name="count_up", source="builtin"
    )
    job_id = uuid.uuid4()
    old.get_model("tools", "ToolJob").objects.create(
        id=job_id,
        tenant=tenant,
        turn=turn,
        node_id="t1:s0:c0",
        tool=tool,
        tool_name="count_up",
        arguments={"steps": 3},
        status="running",
        attempts=1,
        progress=2.0,
        progress_total=3.0,
        progress_message="step 2 of 3",
    )

    migrate()

    job = ToolJob.objects.select_related("turn", "tool").get(id=job_id)
    assert (job.tenant_id, job.turn.id, job.tool and job.tool.id) == (tenant.id, turn.id, tool.id)
    assert (job.node_id, job.tool_name, job.arguments) == ("t1:s0:c0", "count_up", {"steps": 3})
    assert (job.status, job.attempts) == (ToolJobStatus.RUNNING, 1)
    assert (job.progress, job.progress_total, job.progress_message) == (2.0, 3.0, "step 2 of 3")
    # The same content type row, so permissions granted on it in the console still apply.
    ContentType.objects.clear_cache()
    assert ContentType.objects.get_for_model(ToolJob).id == content_type.id
