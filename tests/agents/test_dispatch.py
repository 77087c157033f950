"""Handing a turn to a worker: what the task carries, and what the web process does not wait for."""

from __future__ import annotations

import uuid
from typing import Any

import pytest


def test_a_dispatch_sends_the_session_and_waits_for_no_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A turn's task carries its session (the worker locks it before reading the turn), and
    # the web process does not subscribe to the task's result: nobody reads it, and the
    # subscription cost two Redis round trips per dispatch.
    from celery import current_app

    from apps.agents.services import RUN_TURN_TASK, turn_dispatch
    from apps.core.background import background_flush

    subscribed: list[str] = []
    sent: list[tuple[str, Any]] = []
    # On the class: each thread has a backend of its own, and the dispatch sends from the
    # process's background thread.
    monkeypatch.setattr(
        type(current_app.backend),
        "on_task_call",
        lambda self, producer, task_id: subscribed.append(task_id),
    )
    monkeypatch.setattr(
        current_app.amqp,
        "send_task_message",
        lambda producer, name, message, **options: sent.append((name, message)),
    )
    # As in daphne, which never imports the tasks modules: the task is sent by name, and
    # only the call's own options say there is no result to wait for.
    monkeypatch.delitem(current_app.tasks, RUN_TURN_TASK, raising=False)
    turn_id, session_id = uuid.uuid4(), uuid.uuid4()
    turn_dispatch(turn_id=turn_id, session_id=session_id)
    assert background_flush()
    [(name, message)] = sent
    assert name == RUN_TURN_TASK
    assert list(message.body[0]) == [str(turn_id), str(session_id)]  # (args, kwargs, embed)
    assert subscribed == []


def test_a_dispatch_goes_out_before_the_request_returns_but_a_stuck_broker_holds_it_no_longer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The request waits a few milliseconds for its dispatch to leave (it does not then compete
    # with the response for the GIL); a broker that does not answer costs the 202 no more.
    import threading

    from celery import current_app

    from apps.agents.services import turn_dispatch
    from apps.core.background import background_flush

    sent: list[str] = []
    release = threading.Event()

    def send_task_message(producer: Any, name: str, message: Any, **options: Any) -> None:
        if message.body[0][0] == "stuck":
            release.wait(10)
        sent.append(message.body[0][0])

    monkeypatch.setattr(current_app.amqp, "send_task_message", send_task_message)
    try:
        turn_dispatch(turn_id="quick")
        assert sent == ["quick"]  # already sent when the call returned
        turn_dispatch(turn_id="stuck")
        turn_dispatch(turn_id="after")
        assert sent == ["quick"]  # both returned while the broker was stuck
    finally:
        release.set()
    assert background_flush()
    assert sent == ["quick", "stuck", "after"]  # and nothing was lost, in order
