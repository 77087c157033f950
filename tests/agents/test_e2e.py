"""End to end: real Celery worker, real Redis, real Postgres, daphne for SSE.

A scripted agent calls two tools and answers; the turn is watched over the
websocket and over SSE (including a resume from an event id).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from apps.agents.models import ActionNode, Agent, SessionEvent, Turn, TurnStatus
from apps.tenants.services import api_key_create
from config.asgi import application
from tests.agents.conftest import make_session, wait_for_turn
from tests.conftest import WorkerProcess, World

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ORIGIN = (b"origin", b"http://localhost")


def sse_events(
    response: httpx.Response, *, until: str, limit: float = 60
) -> Iterator[dict[str, Any]]:
    """Parse an SSE stream until an event of type `until` (inclusive)."""
    deadline = time.monotonic() + limit
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {until!r} event within {limit}s")
        if line == "":
            if "data" in fields:
                event = json.loads(fields["data"])
                event["_sse_id"] = fields.get("id")
                yield event
                if event["event"] == until:
                    return
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value


@pytest.mark.asyncio
async def test_websocket_sees_the_steps_stream_and_the_answer(
    world: World, two_tool_agent: Agent, celery_worker: WorkerProcess
) -> None:
    session = await sync_to_async(make_session)(two_tool_agent, world.alice)
    _, raw = await sync_to_async(api_key_create)(tenant=world.tenant_a, name="k", scopes=["write"])
    comm = WebsocketCommunicator(
        application,
        f"/ws/sessions/{session.id}/",
        headers=[ORIGIN, (b"authorization", f"Bearer {raw}".encode())],
    )
    connected, _ = await comm.connect()
    assert connected
    await comm.send_json_to({"type": "message", "content": "what time is it?"})

    received: list[dict[str, Any]] = []
    while not received or received[-1]["event"] not in ("turn.completed", "turn.failed"):
        received.append(await comm.receive_json_from(timeout=30))
    await comm.disconnect()

    kinds = [m["event"] for m in received]
    assert kinds[0] == "ack"
    assert kinds[-1] == "turn.completed", received[-1]
    assert "turn.accepted" in kinds and "turn.started" in kinds
    calls = [m["data"]["tool"] for m in received if m["event"] == "tool.call"]
    assert calls == ["clock_now", "calculator"]
    assert kinds.count("tool.result") == 2
    assert kinds.index("tool.call") < kinds.index("tool.result") < kinds.index("turn.completed")
    tokens = "".join(m["data"]["text"] for m in received if m["event"] == "model.token")
    final = received[-1]["data"]["final_answer"]
    assert "42" in final
    assert final in tokens  # the answer was streamed token by token
    # Durable events carry increasing ids (the SSE ids).
    ids = [m["id"] for m in received if m["id"] is not None]
    assert ids == sorted(ids) and len(ids) == len(set(ids))


def test_sse_streams_live_and_resumes_from_an_event_id(
    world: World, two_tool_agent: Agent, celery_worker: WorkerProcess, daphne_url: str
) -> None:
    session = make_session(two_tool_agent, world.alice)
    _, raw = api_key_create(tenant=world.tenant_a, name="k", scopes=["write"])
    headers = {"Authorization": f"Bearer {raw}"}
    url = f"{daphne_url}/api/v1/sessions/{session.id}/events"
    with httpx.Client(timeout=httpx.Timeout(60, connect=5)) as client:
        with client.stream("GET", url, headers=headers) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            # Subscribed first; now send the message through the REST API.
            accepted = client.post(
                f"{daphne_url}/api/v1/sessions/{session.id}/turns",
                json={"message": "what time is it?"},
                headers=headers,
            )
            assert accepted.status_code == 202, accepted.text
            assert accepted.json()["status"] == "queued"
            live = list(sse_events(stream, until="turn.completed"))
        kinds = [e["event"] for e in live]
        assert kinds[0] == "turn.accepted"
        assert kinds.count("tool.call") == 2
        assert any(k == "model.token" for k in kinds)

        durable = [e for e in live if e["_sse_id"] is not None]
        middle = durable[len(durable) // 2]
        resumed = client.get(
            url, params={"follow": "0"}, headers={**headers, "Last-Event-ID": middle["_sse_id"]}
        )
        assert resumed.status_code == 200
        replayed = [
            json.loads(line[6:]) for line in resumed.text.splitlines() if line.startswith("data: ")
        ]
    expected = list(
        SessionEvent.objects.filter(session=session, id__gt=int(middle["_sse_id"]))
        .order_by("id")
        .values_list("id", flat=True)
    )
    assert [e["id"] for e in replayed] == expected
    assert replayed[-1]["event"] == "turn.completed"


def test_two_turns_of_a_session_never_overlap_but_two_sessions_do(
    world: World, celery_worker: WorkerProcess
) -> None:
    from apps.agents import services
    from tests.agents.conftest import make_agent

    script = [{"tool": "sleepy", "arguments": {"seconds": 1.5}}, {"final": "slept"}]
    agent = make_agent(world.tenant_a, script, tools=["sleepy"], slug="sleeper")
    one, two = make_session(agent), make_session(agent)
    a1 = services.turn_enqueue(session=one, message="first")
    b1 = services.turn_enqueue(session=two, message="other session")
    a2 = services.turn_enqueue(session=one, message="second")
    for turn in (a1, b1, a2):
        wait_for_turn(turn)
        assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
    assert a1.finished_at <= a2.started_at, "turns of one session overlapped"
    assert b1.started_at < a1.finished_at and a1.started_at < b1.finished_at, (
        "turns of different sessions ran one after the other"
    )


def test_worker_killed_mid_turn_resumes_and_runs_each_side_effect_once(
    world: World, celery_worker: WorkerProcess, tmp_path: Any
) -> None:
    from apps.agents import services
    from tests.agents.conftest import make_agent

    ledger, marker = tmp_path / "ledger.txt", tmp_path / "marker.txt"
    script = [
        {"tool": "append_line", "arguments": {"path": str(ledger), "text": "charged"}},
        {"tool": "slow_marker", "arguments": {"path": str(marker), "seconds": 3}},
        {"final": "done"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["append_line", "slow_marker"], slug="crash")
    turn = services.turn_enqueue(session=make_session(agent), message="go")

    deadline = time.monotonic() + 30
    while not (marker.exists() and marker.read_text().strip()):
        assert time.monotonic() < deadline, "the slow tool never started"
        time.sleep(0.05)
    # The worker runs turns on threads: the process running the tool is the worker itself.
    assert int(marker.read_text().split()[0]) == celery_worker.pid
    celery_worker.kill()  # SIGKILL, mid-tool: nobody is left to requeue the task
    celery_worker.start()  # the restarted worker finds the turn nobody holds, and resumes it

    wait_for_turn(turn)
    assert turn.status == TurnStatus.COMPLETED, (turn.outcome, turn.detail)
    assert turn.final_answer == "done"
    assert turn.attempts == 2
    assert ledger.read_text().splitlines() == ["charged"]  # non-idempotent: exactly once
    assert len(marker.read_text().split()) == 2  # idempotent and interrupted: re-run
    assert ActionNode.objects.filter(turn=turn, kind="tool_call", status="completed").count() == 2


def test_cancel_a_running_turn(world: World, celery_worker: WorkerProcess, tmp_path: Any) -> None:
    from apps.agents import services
    from tests.agents.conftest import make_agent

    marker = tmp_path / "marker.txt"
    script = [
        {"tool": "slow_marker", "arguments": {"path": str(marker), "seconds": 1}},
        {"tool": "slow_marker", "arguments": {"path": str(marker), "seconds": 1}},
        {"final": "should not get here"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["slow_marker"], slug="cancel-me")
    turn = services.turn_enqueue(session=make_session(agent), message="go")
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    services.turn_cancel(turn=Turn.objects.get(id=turn.id))
    wait_for_turn(turn)
    assert turn.status == TurnStatus.CANCELLED
    assert turn.final_answer == ""
    assert SessionEvent.objects.filter(turn=turn, type="turn.cancelled").exists()


def test_an_idle_event_stream_stays_open(
    world: World, two_tool_agent: Agent, daphne_url: str
) -> None:
    # Nothing happens on the session: the stream must wait it out (keep-alive comments),
    # not die when the channel layer's blocking read outlasts Redis's socket timeout.
    session = make_session(two_tool_agent, world.alice)
    _, raw = api_key_create(tenant=world.tenant_a, name="k", scopes=["read"])
    url = f"{daphne_url}/api/v1/sessions/{session.id}/events"
    with httpx.Client(timeout=httpx.Timeout(60, connect=5)) as client:
        with client.stream("GET", url, headers={"Authorization": f"Bearer {raw}"}) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            comments = (line for line in lines if line.startswith(":"))
            assert next(comments, None) == ": keep-alive"
