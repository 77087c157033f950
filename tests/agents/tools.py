"""Builtin tools only the test suite registers (WARDEN_TOOL_MODULES=tests.agents.tools).

They leave evidence in files so a test can count how often each ran, across
worker processes and crashes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from apps.tools.executors.base import report_progress
from apps.tools.executors.builtin import BuiltinCall, default_registry

T = TypeVar("T")

_PATH = {"type": "string"}


@default_registry.register(
    "append_line",
    description="Append a line to a file (NOT idempotent: each run adds a line).",
    input_schema={
        "type": "object",
        "properties": {"path": _PATH, "text": {"type": "string"}},
        "required": ["path", "text"],
    },
    idempotent=False,
    risk_tier="low",
    replace=True,
)
def append_line(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
    path = Path(arguments["path"])
    with path.open("a") as handle:
        handle.write(arguments["text"] + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return {"lines": len(path.read_text().splitlines())}


@default_registry.register(
    "slow_marker",
    description="Write the worker pid to a marker file, then take a while (idempotent).",
    input_schema={
        "type": "object",
        "properties": {"path": _PATH, "seconds": {"type": "number"}},
        "required": ["path", "seconds"],
    },
    idempotent=True,
    risk_tier="low",
    timeout_s=120.0,
    replace=True,
)
def slow_marker(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
    path = Path(arguments["path"])
    with path.open("a") as handle:
        handle.write(f"{os.getpid()}\n")
    # The delay is the subject under test (a long tool call a crash can interrupt).
    time.sleep(float(arguments["seconds"]))
    return {"slept": arguments["seconds"], "runs": len(path.read_text().splitlines())}


@default_registry.register(
    "sleepy",
    description="Take `seconds` to answer (for ordering and concurrency tests).",
    input_schema={
        "type": "object",
        "properties": {"seconds": {"type": "number"}},
        "required": ["seconds"],
    },
    idempotent=True,
    risk_tier="low",
    timeout_s=120.0,
    replace=True,
)
def sleepy(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
    time.sleep(float(arguments["seconds"]))
    return {"slept": arguments["seconds"]}


@default_registry.register(
    "count_up",
    description="Count from 1 to `steps`, reporting progress at each step (a long-running job).",
    input_schema={
        "type": "object",
        "properties": {"steps": {"type": "integer", "minimum": 1, "maximum": 20}},
        "required": ["steps"],
        "additionalProperties": False,
    },
    idempotent=True,
    risk_tier="low",
    replace=True,
)
def count_up(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
    steps = int(arguments["steps"])
    for step in range(1, steps + 1):
        report_progress(step, steps, f"step {step} of {steps}")
    return {"counted": steps, "pid": os.getpid()}


@default_registry.register(
    "burn_cpu",
    description="Append the pid that runs it to a file, then compute forever (CPU-bound).",
    input_schema={
        "type": "object",
        "properties": {"path": _PATH},
        "required": ["path"],
    },
    idempotent=True,
    risk_tier="low",
    timeout_s=2.0,
    cpu_bound=True,
    replace=True,
)
def burn_cpu(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
    with Path(arguments["path"]).open("a") as handle:
        handle.write(f"{os.getpid()}\n")
    # Never returns: the overrun its timeout must stop (pure computation holds the GIL).
    value = 3
    while True:
        value = value * value % 1_000_000_007


@default_registry.register(
    "guarded_append",
    description="Append a line to a file (high risk: the default policy asks a human first).",
    input_schema={
        "type": "object",
        "properties": {"path": _PATH, "text": {"type": "string"}},
        "required": ["path", "text"],
    },
    idempotent=False,
    risk_tier="high",
    replace=True,
)
def guarded_append(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
    return append_line(arguments, call)


@default_registry.register(
    "events_so_far",
    description="The types of the events stored for this turn so far, in order.",
    input_schema={"type": "object", "properties": {}},
    idempotent=True,
    risk_tier="low",
    replace=True,
)
def events_so_far(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
    """Read on a connection of its own: what is committed, nothing else."""
    from apps.agents.models import ActionNode, SessionEvent

    def committed() -> dict[str, Any]:
        rows = SessionEvent.objects.filter(turn_id=call.ctx.turn_id).order_by("id")
        nodes = ActionNode.objects.filter(turn_id=call.ctx.turn_id).order_by("position")
        return {
            "events": [row.type for row in rows],
            "nodes": {node.node_id: node.status for node in nodes},
        }

    return _on_another_connection(committed)


def _on_another_connection(work: Callable[[], T]) -> T:
    """`work` on another thread, so on a database connection of its own (closed after)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def run() -> T:
        try:
            return work()
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as other:
        return other.submit(run).result()


@default_registry.register(
    "cancel_my_turn",
    description="Asks for this turn's cancellation (as a user would, from elsewhere).",
    input_schema={"type": "object", "properties": {}},
    idempotent=True,
    risk_tier="low",
    replace=True,
)
def cancel_my_turn(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
    """Committed on a connection of its own while the tool runs."""
    from apps.agents import services
    from apps.agents.models import Turn

    _on_another_connection(lambda: services.turn_cancel(turn=Turn.objects.get(id=call.ctx.turn_id)))
    return {"asked": True}
