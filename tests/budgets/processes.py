"""Start reserver.py processes that reserve at the same moment, and collect what they did."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from django.conf import settings

RESERVER = Path(__file__).resolve().parent / "reserver.py"


def start(prefix: str, plan: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(RESERVER), settings.REDIS_URL, prefix, json.dumps(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def release(client: redis.Redis, prefix: str, count: int) -> None:
    """Once `count` processes wait on the barrier, let them all go."""
    deadline = time.monotonic() + 60
    while int(client.get(f"{prefix}:ready") or 0) < count:
        if time.monotonic() > deadline:
            raise TimeoutError("the reserver processes did not start")
        time.sleep(0.02)
    client.rpush(f"{prefix}:go", *["go"] * count)


def run(client: redis.Redis, prefix: str, plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run one process per plan, all at once; their reports."""
    procs = [start(prefix, plan) for plan in plans]
    release(client, prefix, len(procs))
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports
