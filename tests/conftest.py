"""Shared fixtures: the alice/bob/charlie world across two tenants, API clients, a real worker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.tenants import services
from apps.tenants.models import Role, Tenant
from apps.tools.executors.mcp_pool import allow_stdio_servers
from apps.tools.stdio import tenant_workspace
from tests.factories import MembershipFactory, TenantFactory, UserFactory

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["tests.breakers"]

# The tests start stdio MCP servers in this process too (as workers and the operator's CLI do);
# web processes never may (tests/security/test_stdio_* shows they cannot).
allow_stdio_servers("pytest")


@dataclass
class World:
    """Tenant A with alice (owner) and bob (member); tenant B with charlie (owner)."""

    tenant_a: Tenant
    tenant_b: Tenant
    alice: Any
    bob: Any
    charlie: Any


@pytest.fixture
def world(db: None) -> Iterator[World]:
    tenant_a = TenantFactory(name="Acme", slug="acme")
    tenant_b = TenantFactory(name="Globex", slug="globex")
    alice = UserFactory(username="alice", is_staff=True)
    bob = UserFactory(username="bob")
    charlie = UserFactory(username="charlie", is_staff=True)
    MembershipFactory(tenant=tenant_a, user=alice, role=Role.OWNER)
    MembershipFactory(tenant=tenant_a, user=bob, role=Role.MEMBER)
    MembershipFactory(tenant=tenant_b, user=charlie, role=Role.OWNER)
    yield World(tenant_a, tenant_b, alice, bob, charlie)
    # The tenants' stdio workspaces (var/test/workspaces/<tenant id>), if a test made them.
    for tenant in (tenant_a, tenant_b):
        shutil.rmtree(tenant_workspace(tenant.id), ignore_errors=True)


def client_for(tenant: Tenant, scopes: list[str] | None = None) -> APIClient:
    _, raw = services.api_key_create(tenant=tenant, name="test", scopes=scopes or ["admin"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def alice_client(world: World) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=None)
    client.force_login(world.alice)
    return client


@pytest.fixture
def charlie_client(world: World) -> APIClient:
    client = APIClient()
    client.force_login(world.charlie)
    return client


@pytest.fixture
def bob_client(world: World) -> APIClient:
    client = APIClient()
    client.force_login(world.bob)
    return client


# --------------------------------------------------------------------------- Celery worker


class WorkerProcess:
    """A real `celery worker` process on the test broker and the test database."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.name = ""
        self.log = ROOT / "var" / "test" / "worker.log"

    def start(self) -> None:
        from config.celery import app

        self.name = f"test-{uuid.uuid4().hex[:8]}@localhost"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-l",
                "INFO",
                # The pool and its size come from the settings, as in `make run`: the
                # threads pool, WARDEN_WORKER_TURNS turns at once.
                "-n",
                self.name,
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-3000:]}")
            replies = app.control.ping(destination=[self.name], timeout=0.5)
            if replies:
                return
        raise RuntimeError(f"worker did not answer: {self.log.read_text()[-3000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and its pool children)."""
        import signal

        if self.proc and self.proc.poll() is None:
            subprocess.run(["pkill", "-KILL", "-P", str(self.proc.pid)], check=False)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup: None, django_db_blocker: Any) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(_test_env())
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Drop connections other threads left open (async consumers) so the test DB can be dropped."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


class LiveServer:
    """daphne serving the real ASGI app (HTTP + websockets) on the test database."""

    def __init__(self, env: dict[str, str], module: str = "daphne") -> None:
        """`module` runs daphne's command line (tests/core/contract_server.py wraps it)."""
        from devtools.embedded import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = ROOT / "var" / "test" / "daphne.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "config.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        from devtools.embedded import port_in_use

        deadline = time.monotonic() + 30
        while not port_in_use(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daphne did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _test_env() -> dict[str, str]:
    from django.db import connection

    test_db = connection.settings_dict["NAME"]
    base_url = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"{base_url}/{test_db}",
        "WARDEN_LOG_FORMAT": "console",
    }


@pytest.fixture(scope="session")
def daphne_url(django_db_setup: None) -> Iterator[str]:
    server = LiveServer(_test_env())
    yield server.url
    server.stop()
