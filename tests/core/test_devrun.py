"""`make run` refuses, with a message and a clean exit, to fight over a port or a data dir."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _devrun(var: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "WARDEN_VAR_DIR": str(var),
        "WARDEN_PORT": str(port),
        "WARDEN_LOCAL_LLM": "off",
    }
    return subprocess.run(
        [sys.executable, "-m", "devtools.devrun"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _devrun(tmp_path, port)
    assert result.returncode == 1
    assert f"port {port} is already in use" in result.stdout
    assert not (tmp_path / "postgres").exists()  # nothing was started


def test_a_second_instance_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with (tmp_path / "run.lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242")
        lock.flush()
        result = _devrun(tmp_path, 1)
    assert result.returncode == 1
    assert "another `make run` (pid 4242)" in result.stdout
    assert not (tmp_path / "postgres").exists()
