"""Fixtures for the catalog and the toolbox: real MCP servers, real WASM, real DB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from apps.tenants.models import Tenant
from apps.tools import services
from apps.tools.execution import credential_signing_key
from apps.tools.models import McpServer
from apps.tools.stdio import tenant_workspace
from tests.agents.conftest import no_dispatch

__all__ = ["no_dispatch"]  # the agents' fixture: turns run in-process here too

SERVERS = Path(__file__).resolve().parent / "servers"
TOOLS_SERVERS = Path(__file__).resolve().parent.parent / "tools" / "servers"
PYTHON = sys.executable


def time_server(tenant: Tenant, name: str = "time") -> McpServer:
    return services.mcp_server_save(tenant=tenant, name=name, transport="stdio", template="time")


def make_git_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git = ["git", "-C", str(path), "-c", "user.name=Test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (path / "README.md").write_text("hello\n")
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Initial commit of the readme"], check=True)
    return path


@pytest.fixture
def git_repo(world: Any) -> Path:
    """A repository in tenant A's workspace (the git template reads only those)."""
    return make_git_repo(tenant_workspace(world.tenant_a.id, create=True) / "repo")


def git_server(tenant: Tenant, repo: Path, name: str = "git") -> McpServer:
    return services.mcp_server_save(
        tenant=tenant,
        name=name,
        transport="stdio",
        template="git",
        args={"--repository": str(repo)},
    )


@dataclass
class CatalogServer:
    """The stdio catalog server of one test; `offer` changes what it lists next time."""

    spec: Path
    server: McpServer

    def offer(self, **tools: str) -> None:
        self.spec.write_text(json.dumps({"tools": tools}))


@pytest.fixture
def catalog_server(world: Any) -> CatalogServer:
    spec = tenant_workspace(world.tenant_a.id, create=True) / "spec.json"
    server = services.mcp_server_save(
        tenant=world.tenant_a,
        name="catalog",
        transport="stdio",
        template="catalog",
        args={"spec": "spec.json"},
    )
    catalog = CatalogServer(spec, server)
    catalog.offer(alpha="Echo the text.", beta="Echo the text, too.")
    return catalog


@dataclass
class SecureServer:
    url: str
    auth: str


@pytest.fixture(scope="session")
def secure_server_factory() -> Iterator[Callable[..., SecureServer]]:
    """Start secure_server.py processes expecting a tenant and resource (stopped at the end)."""
    started: list[subprocess.Popen[str]] = []

    def start(*, tenant_id: str, resource: str) -> SecureServer:
        auth = uuid.uuid4().hex
        process = subprocess.Popen(
            [PYTHON, str(SERVERS / "secure_server.py")],
            stdout=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "WARDEN_TOOL_CREDENTIAL_KEY": credential_signing_key(),
                "EXPECT_TENANT": tenant_id,
                "EXPECT_RESOURCE": resource,
                "EXPECT_AUTH": auth,
            },
        )
        started.append(process)
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port, "secure_server.py did not start"
        return SecureServer(url=f"http://127.0.0.1:{port}/mcp", auth=auth)

    yield start
    for process in started:
        process.kill()
        process.wait(10)
        if process.stdout:
            process.stdout.close()
