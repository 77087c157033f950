"""Builtin tools only the test suite registers (WARDEN_TOOL_MODULES=tests.agents.tools).

They leave evidence in files so a test can count how often each ran, across
worker processes and crashes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from apps.tools.registry import builtin_tool

_PATH = {"type": "string"}


@builtin_tool(
    name="append_line",
    description="Append a line to a file (NOT idempotent: each run adds a line).",
    input_schema={
        "type": "object",
        "properties": {"path": _PATH, "text": {"type": "string"}},
        "required": ["path", "text"],
    },
    idempotent=False,
)
def append_line(arguments: dict[str, Any]) -> dict[str, Any]:
    path = Path(arguments["path"])
    with path.open("a") as handle:
        handle.write(arguments["text"] + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return {"lines": len(path.read_text().splitlines())}


@builtin_tool(
    name="slow_marker",
    description="Write the worker pid to a marker file, then take a while (idempotent).",
    input_schema={
        "type": "object",
        "properties": {"path": _PATH, "seconds": {"type": "number"}},
        "required": ["path", "seconds"],
    },
)
def slow_marker(arguments: dict[str, Any]) -> dict[str, Any]:
    path = Path(arguments["path"])
    with path.open("a") as handle:
        handle.write(f"{os.getpid()}\n")
    # The delay is the subject under test (a long tool call a crash can interrupt).
    time.sleep(float(arguments["seconds"]))
    return {"slept": arguments["seconds"], "runs": len(path.read_text().splitlines())}


@builtin_tool(
    name="sleepy",
    description="Take `seconds` to answer (for ordering and concurrency tests).",
    input_schema={
        "type": "object",
        "properties": {"seconds": {"type": "number"}},
        "required": ["seconds"],
    },
)
def sleepy(arguments: dict[str, Any]) -> dict[str, Any]:
    time.sleep(float(arguments["seconds"]))
    return {"slept": arguments["seconds"]}
