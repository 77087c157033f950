"""Real servers for the tools tests: MCP servers in subprocesses, on loopback, free ports.

Framework-free (no Django): run with `pytest -p no:django --confcutdir=tests/tools tests/tools`
while the project's settings are in flux, or as part of the whole suite.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.core.egress import EgressPolicy
from apps.tools.executors.base import CallContext
from apps.tools.executors.mcp import McpClientPool, McpServerConfig

SERVERS = Path(__file__).resolve().parent / "servers"
PYTHON = sys.executable
# The test servers listen on loopback, which the egress guard refuses unless allowed.
LOOPBACK = EgressPolicy(("127.0.0.0/8",))


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
    transport: str
    port: int

    @property
    def url(self) -> str:
        if self.transport == "websocket":
            return f"ws://127.0.0.1:{self.port}/"
        path = "/sse" if self.transport == "sse" else "/mcp"
        return f"http://127.0.0.1:{self.port}{path}"

    def admin(self, action: str, **payload: Any) -> dict[str, int]:
        response = httpx.post(f"http://127.0.0.1:{self.port}/_admin/{action}", json=payload)
        response.raise_for_status()
        return response.json()["calls"]

    def calls(self) -> dict[str, int]:
        return self.admin("stats")

    def config(self, key: str | None = None, **settings: Any) -> McpServerConfig:
        kind = "streamable_http" if self.transport == "streamable-http" else self.transport
        return McpServerConfig(
            key=key or f"{self.transport}-{uuid.uuid4().hex[:8]}",
            transport=kind,
            url=self.url,
            **{"egress": LOOPBACK, **settings},
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        if self.process.stdout:
            self.process.stdout.close()


def start_server(transport: str, *, port: int = 0) -> RunningServer:
    """Start demo_server.py; returns once its socket is listening (it prints the port then)."""
    process = subprocess.Popen(
        [PYTHON, str(SERVERS / "demo_server.py"), transport, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip():
        process.kill()
        raise RuntimeError(f"demo MCP server ({transport}) did not start")
    return RunningServer(process, transport, int(line))


@pytest.fixture(scope="session")
def server_factory() -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def start(transport: str, *, port: int = 0) -> RunningServer:
        server = start_server(transport, port=port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def _http_server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory("streamable-http")


@pytest.fixture
def http_server(_http_server: RunningServer) -> RunningServer:
    """The shared streamable-HTTP server, with its counters and injected faults reset."""
    _http_server.admin("reset")
    return _http_server


@pytest.fixture(scope="session")
def pool() -> Iterator[McpClientPool]:
    pool = McpClientPool()
    yield pool
    pool.close()


def demo_stdio_config(key: str | None = None, **settings: Any) -> McpServerConfig:
    return McpServerConfig(
        key=key or f"demo-stdio-{uuid.uuid4().hex[:8]}",
        transport="stdio",
        command=PYTHON,
        args=(str(SERVERS / "demo_server.py"), "stdio"),
        **settings,
    )


@pytest.fixture
def ctx() -> CallContext:
    return CallContext(
        tenant_id="tenant-a", session_id="session-1", turn_id="turn-1", idempotency_key="k-1"
    )


class SleepRecorder:
    """Stands in for time.sleep in the retry loop: records the backoff, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()
