"""Liveness of the Celery worker and beat, cheap enough for an exec probe.

`celery inspect ping` would need a broker round trip, a broadcast every worker answers, and
a Celery app started in the probe (seconds, on every probe of every pod). Instead each
process touches a heartbeat file from its own main loop, and the probe only reads the file's
age:

- the worker from a timer on its event loop (the loop that takes messages off the broker),
  so a worker whose loop is stuck, or that is stuck reconnecting, stops beating;
- beat after every scheduler tick.

A process that shuts down cleanly removes its file, and one that starts removes a file left
by its predecessor, so "no file" means "not running" and a stale file means "stalled".

    python -m config.heartbeat worker [--max-age 60]     # exit 0 fresh, 1 stale or absent
    python -m config.heartbeat beat

The files are `WARDEN_WORKER_HEARTBEAT_FILE` / `WARDEN_BEAT_HEARTBEAT_FILE` (default
`<tmp>/warden-worker.heartbeat`, `<tmp>/warden-beat.heartbeat`: one worker or beat per
container), touched every `WARDEN_HEARTBEAT_SECONDS` (10).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from celery import bootsteps
from celery.beat import PersistentScheduler

from config.env import env_float, env_str

KINDS = ("worker", "beat")
DEFAULT_MAX_AGE_SECONDS = 60.0


def heartbeat_file(kind: str) -> Path:
    # Each variable spelled out, so that a search for its name finds where it is read.
    if kind == "worker":
        configured = env_str("WARDEN_WORKER_HEARTBEAT_FILE", "")
    elif kind == "beat":
        configured = env_str("WARDEN_BEAT_HEARTBEAT_FILE", "")
    else:
        raise ValueError(f"unknown heartbeat {kind!r}")
    return Path(configured or Path(tempfile.gettempdir()) / f"warden-{kind}.heartbeat")


def heartbeat_interval() -> float:
    return env_float("WARDEN_HEARTBEAT_SECONDS", 10.0)


def touch(path: Path) -> None:
    # Never let a full or read-only disk take the worker down: the probe will say so.
    with contextlib.suppress(OSError):
        path.touch()


def clear(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def check(kind: str, *, max_age: float = DEFAULT_MAX_AGE_SECONDS) -> tuple[bool, str]:
    """(alive, why) for the heartbeat of `kind` on this host."""
    path = heartbeat_file(kind)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False, f"{kind}: no heartbeat at {path} (not running, or not started yet)"
    except OSError as exc:
        return False, f"{kind}: cannot read {path}: {exc}"
    if age > max_age:
        return False, f"{kind}: heartbeat {age:.0f}s old (limit {max_age:.0f}s): stalled"
    return True, f"{kind}: alive (heartbeat {age:.1f}s old)"


class WorkerHeartbeat(bootsteps.StartStopStep):
    """A worker bootstep: beats from the worker's timer, which the event loop drives."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.path = heartbeat_file("worker")
        self.tref: Any = None
        clear(self.path)  # a predecessor's file says nothing about this worker

    def start(self, parent: Any) -> None:
        touch(self.path)
        self.tref = parent.timer.call_repeatedly(heartbeat_interval(), touch, (self.path,))

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        clear(self.path)

    terminate = stop  # a cold shutdown (second SIGTERM, SIGQUIT) too


class HeartbeatScheduler(PersistentScheduler):
    """Celery's default scheduler, beating after every tick (beat's loop sleeps between
    ticks at most `beat_max_loop_interval`, and recovery runs every 30 s, so a live beat
    ticks far more often than the probe's limit)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.heartbeat_path = heartbeat_file("beat")
        clear(self.heartbeat_path)
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval = super().tick(*args, **kwargs)
        touch(self.heartbeat_path)
        return interval

    def close(self) -> None:
        super().close()
        clear(self.heartbeat_path)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m config.heartbeat",
        description="Exit 0 if the worker's (or beat's) heartbeat is fresh, 1 otherwise.",
    )
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument(
        "--max-age",
        type=float,
        default=DEFAULT_MAX_AGE_SECONDS,
        help=f"seconds a heartbeat may be old (default {DEFAULT_MAX_AGE_SECONDS:.0f})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    options = argument_parser().parse_args(argv)
    alive, why = check(options.kind, max_age=options.max_age)
    print(why, file=sys.stdout if alive else sys.stderr)
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
