"""The worker's and beat's liveness probe (`python -m config.heartbeat`) against real
processes: it passes for a running one, fails for a stalled one (SIGSTOP: alive but not
looping) and for one that has stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config import heartbeat
from tests.conftest import ROOT, WorkerProcess, _test_env

# Fast beats so that a stall shows within a couple of seconds.
BEAT_EVERY = "0.2"
STALE_AFTER = 2.0


def probe(kind: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The probe exactly as Kubernetes and compose run it: a new process, exit status."""
    return subprocess.run(
        [sys.executable, "-m", "config.heartbeat", kind, "--max-age", str(STALE_AFTER)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def alive(kind: str) -> bool:
    return heartbeat.check(kind, max_age=STALE_AFTER)[0]


@pytest.fixture
def probe_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, django_db_setup: None
) -> dict[str, str]:
    files = {
        "WARDEN_WORKER_HEARTBEAT_FILE": str(tmp_path / "worker.heartbeat"),
        "WARDEN_BEAT_HEARTBEAT_FILE": str(tmp_path / "beat.heartbeat"),
    }
    for name, value in files.items():  # for heartbeat.check() in this process
        monkeypatch.setenv(name, value)
    return {**_test_env(), **files, "WARDEN_HEARTBEAT_SECONDS": BEAT_EVERY}


@pytest.fixture
def beat_process(probe_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = ROOT / "var" / "test" / "beat.log"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "INFO",
            "--schedule", str(tmp_path / "celerybeat-schedule"),
            "--max-interval", "1",
        ],
        cwd=ROOT,
        env=probe_env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    yield proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()


def test_probe_reads_absent_fresh_and_stale_heartbeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.heartbeat"
    monkeypatch.setenv("WARDEN_WORKER_HEARTBEAT_FILE", str(path))
    ok, why = heartbeat.check("worker")
    assert not ok and "no heartbeat" in why

    heartbeat.touch(path)
    ok, why = heartbeat.check("worker", max_age=60)
    assert ok and "alive" in why
    assert heartbeat.main(["worker", "--max-age", "60"]) == 0

    two_minutes_ago = time.time() - 120
    os.utime(path, (two_minutes_ago, two_minutes_ago))
    ok, why = heartbeat.check("worker", max_age=60)
    assert not ok and "stalled" in why
    assert heartbeat.main(["worker", "--max-age", "60"]) == 1
    assert heartbeat.main(["worker", "--max-age", "180"]) == 0


@pytest.mark.worker
def test_worker_probe_passes_while_running_and_fails_stalled_or_stopped(
    probe_env: dict[str, str],
) -> None:
    worker = WorkerProcess(probe_env)
    worker.start()  # returns once the worker answers a ping
    try:
        running = probe("worker", probe_env)
        assert running.returncode == 0, running.stderr
        assert "alive" in running.stdout

        os.kill(worker.pid, signal.SIGSTOP)  # the process lives, its loop does not
        try:
            wait_until(lambda: not alive("worker"), "the stopped worker's heartbeat to age")
            stalled = probe("worker", probe_env)
            assert stalled.returncode == 1
            assert "stalled" in stalled.stderr
            assert worker.proc is not None and worker.proc.poll() is None
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        wait_until(lambda: alive("worker"), "the resumed worker to beat again")
        assert probe("worker", probe_env).returncode == 0
    finally:
        worker.stop()

    stopped = probe("worker", probe_env)
    assert stopped.returncode == 1
    assert "no heartbeat" in stopped.stderr


@pytest.mark.worker
def test_beat_probe_passes_while_running_and_fails_stalled_or_stopped(
    probe_env: dict[str, str], beat_process: subprocess.Popen[bytes]
) -> None:
    wait_until(lambda: alive("beat"), "beat's first tick")
    assert probe("beat", probe_env).returncode == 0

    os.kill(beat_process.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: not alive("beat"), "the stopped beat's heartbeat to age")
        stalled = probe("beat", probe_env)
        assert stalled.returncode == 1
        assert "stalled" in stalled.stderr
    finally:
        os.kill(beat_process.pid, signal.SIGCONT)
    wait_until(lambda: alive("beat"), "the resumed beat to tick again")

    beat_process.terminate()
    beat_process.wait(timeout=30)
    stopped = probe("beat", probe_env)
    assert stopped.returncode == 1
    assert "no heartbeat" in stopped.stderr
