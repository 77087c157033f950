"""Bounded work through a real Celery worker (2 prefork children), real Redis and Postgres.

A turn whose agent throws a calculator bomb ends, the model being told why, and other
sessions' turns on the same worker complete. A cpu-bound builtin that overruns is killed at
its timeout, and the same worker process carries on with the next tool call.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apps.agents import services
from apps.agents.models import ActionNode, Turn, TurnStatus
from tests.agents.conftest import make_agent, make_session, wait_for_turn
from tests.conftest import WorkerProcess, World

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Bounded waits: a turn that finishes at all within this long has not frozen its worker. On
# the code before the fix a bomb held the GIL of its pool process for many minutes.
TURN_WAIT_S = 60


def _tool_nodes(turn: Turn) -> list[ActionNode]:
    return list(ActionNode.objects.filter(turn=turn, kind="tool_call").order_by("position"))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] == "Z"


def test_calculator_bombs_end_and_other_sessions_turns_complete(
    world: World, celery_worker: WorkerProcess
) -> None:
    bombs = ["(((10**100)**100)**100)**100", "((((9**99)**99)**99)**99)"]
    bombers = []
    for number, bomb in enumerate(bombs):
        script = [
            {"tool": "calculator", "arguments": {"expression": bomb}},
            {"final": "Calculator said: ${tool_result_1}"},
        ]
        agent = make_agent(
            world.tenant_a,
            script,
            tools=["calculator"],
            slug=f"bomb-{number}",
            endpoint_name=f"bomb-{number}",
        )
        # One bomb per pool process of the worker: before the fix both froze.
        bombers.append(services.turn_enqueue(session=make_session(agent), message="go"))
    script = [
        {"tool": "calculator", "arguments": {"expression": "6 * 7"}},
        {"final": "The answer is ${tool_result_1}."},
    ]
    honest = make_agent(world.tenant_b, script, tools=["calculator"], slug="honest")
    other = services.turn_enqueue(session=make_session(honest), message="what is 6 * 7?")

    for turn in bombers:
        wait_for_turn(turn, timeout=TURN_WAIT_S)
        assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
        (node,) = _tool_nodes(turn)
        assert node.status == "error"
        assert node.outputs["error"].startswith("calculation_too_large: ")
        assert "calculation_too_large" in turn.final_answer  # the model was told
    wait_for_turn(other, timeout=TURN_WAIT_S)
    assert other.status == TurnStatus.COMPLETED, (other.outcome, other.detail)
    assert "42" in other.final_answer


def test_an_overrunning_cpu_bound_tool_is_killed_and_the_worker_carries_on(
    world: World, celery_worker: WorkerProcess, tmp_path: Path
) -> None:
    burned, marker = tmp_path / "burn.txt", tmp_path / "marker.txt"
    script = [
        {"tool": "burn_cpu", "arguments": {"path": str(burned)}},  # 2 s timeout, never ends
        {"tool": "slow_marker", "arguments": {"path": str(marker), "seconds": 0}},
        {"final": "burn: ${tool_result_1}"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["burn_cpu", "slow_marker"], slug="burner")
    turn = services.turn_enqueue(session=make_session(agent), message="go")

    wait_for_turn(turn, timeout=TURN_WAIT_S)
    assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
    burn, after = _tool_nodes(turn)
    assert burn.status == "error" and burn.outputs["error"].startswith("timeout: ")
    assert "stopped" in turn.final_answer
    (helper,) = map(int, burned.read_text().split())  # ran once: a stopped call is not retried
    (worker,) = map(int, marker.read_text().split())
    assert helper != worker  # the computation ran outside the worker's pool process...
    assert _gone(helper)  # ...and was killed; the pool process then ran the next tool
    assert after.status == "completed"

    # Another session's turn is served by the same worker afterwards.
    script = [
        {"tool": "calculator", "arguments": {"expression": "2 ** 10"}},
        {"final": "${tool_result_1}"},
    ]
    calc = make_agent(world.tenant_b, script, tools=["calculator"], slug="after-burn")
    next_turn = services.turn_enqueue(session=make_session(calc), message="go")
    wait_for_turn(next_turn, timeout=TURN_WAIT_S)
    assert next_turn.status == TurnStatus.COMPLETED and "1024" in next_turn.final_answer
