"""Hand short sends to one background thread per process, so the caller does not wait on them.

    transaction.on_commit(lambda: run_in_background(send_the_task))

For work whose loss is already recovered elsewhere: a Celery dispatch after commit (the turn is
a row; the recovery sweep re-dispatches one whose message never left). Sent in the order
queued, each in a copy of the caller's context (so the request id still reaches the task).

Why: publishing a Celery task from a web request cost ~4 ms of a 202 (profiled), most of it
building a result backend — Celery keeps one per thread, and daphne runs every request on a
new thread. One long-lived thread keeps one, with its broker connection.

A caller may wait a bounded time for its send (`wait_s`): the turn dispatch waits a few
milliseconds, so its message leaves at once instead of when the request's thread next lets go
of the GIL (after the response, ~1.5 ms later on a turn), and a broker that does not answer
holds the request no longer than that.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import queue
import threading
from collections.abc import Callable

logger = logging.getLogger("warden.background")

_Item = tuple[contextvars.Context, Callable[[], object]] | None


class _Runner:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._queue: queue.Queue[_Item] = queue.Queue()

    def submit(self, fn: Callable[[], object]) -> None:
        if self._pid != os.getpid():
            self._start()
        self._queue.put((contextvars.copy_context(), fn))

    def flush(self, timeout: float) -> bool:
        if self._pid != os.getpid():
            return True
        done = threading.Event()
        self._queue.put((contextvars.copy_context(), done.set))
        return done.wait(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.Queue()  # after a fork the parent's thread is not ours
            thread = threading.Thread(
                target=self._run, args=(self._queue,), name="warden-background", daemon=True
            )
            thread.start()
            self._pid = os.getpid()

    @staticmethod
    def _run(pending: queue.Queue[_Item]) -> None:
        while True:
            item = pending.get()
            if item is None:
                return
            context, fn = item
            try:
                context.run(fn)
            except Exception:
                logger.exception("background send failed")


_runner = _Runner()
atexit.register(_runner.flush, 5.0)


def run_in_background(fn: Callable[[], object], *, wait_s: float = 0.0) -> None:
    """Run `fn` on the background thread. With `wait_s`, wait up to that long for it to have
    run: a quick send then goes out at once, instead of waiting for the caller's thread to let
    go of the GIL, and a slow one (a broker far away, or down) holds the caller no longer."""
    if wait_s <= 0:
        _runner.submit(fn)
        return
    done = threading.Event()

    def run_then_say() -> None:
        try:
            fn()
        finally:
            done.set()

    _runner.submit(run_then_say)
    done.wait(wait_s)


def background_flush(timeout: float = 5.0) -> bool:
    """Wait until what was submitted so far has run (for shutdown and tests)."""
    return _runner.flush(timeout)
