"""Where a stdio MCP server runs and what it gets: on a worker (never in the web process), in
the tenant's workspace, with a minimal environment holding none of the platform's secrets.
And who sees a server's configuration: owners and admins; others see it redacted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from rest_framework.test import APIClient

from apps.tenants.services import api_key_create
from apps.tools.models import McpServer, Tool
from apps.tools.stdio import tenant_workspace
from tests.conftest import ROOT, WorkerProcess, World, client_for
from tests.security.conftest import Payload

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

BASE_ENV = {"PATH", "HOME", "LANG"}


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_discovery_over_rest_runs_on_a_worker_with_a_minimal_environment(
    world: World, celery_worker: WorkerProcess, daphne_url: str
) -> None:
    _, raw = api_key_create(tenant=world.tenant_a, name="k", scopes=["write"])
    headers = {"Authorization": f"Bearer {raw}"}
    with httpx.Client(base_url=daphne_url, headers=headers, timeout=60) as client:
        created = client.post(
            "/api/v1/mcp-servers",
            json={
                "name": "dump",
                "transport": "stdio",
                "template": "envdump",
                "env": {"GREETING": "hello there"},
                "auth_env": "DUMP_TOKEN",
                "auth_secret": "token-for-the-server",
            },
        )
        assert created.status_code == 201, created.text
        discovered = client.post(f"/api/v1/mcp-servers/{created.json()['id']}/discover")
        assert discovered.status_code == 200, discovered.text
        assert discovered.json()["result"]["created"] == ["environment"]

    report = json.loads(Tool.objects.get(tenant=world.tenant_a, name="environment").description)
    # Started by a Celery worker process, not by daphne.
    parent = _cmdline(report["ppid"])
    assert "celery" in parent and "daphne" not in parent, parent
    # Exactly the fixed base, the template's variable and the secret: nothing inherited.
    env = report["env"]
    assert set(env) == BASE_ENV | {"GREETING", "DUMP_TOKEN"}, sorted(env)
    assert env["GREETING"] == "hello there" and env["DUMP_TOKEN"] == "token-for-the-server"
    worker_env = celery_worker.env
    for secret_name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        assert secret_name in worker_env  # the worker has them …
        assert secret_name not in env  # … the server does not
    for value in (worker_env["DATABASE_URL"], worker_env["REDIS_URL"]):
        assert value not in json.dumps(report)
    # In the tenant's own workspace, which nobody else on the host may read.
    workspace = tenant_workspace(world.tenant_a.id)
    assert env["HOME"] == str(workspace) and report["cwd"] == str(workspace)
    assert workspace.name == str(world.tenant_a.id)
    assert workspace.stat().st_mode & 0o777 == 0o700


def test_a_web_process_cannot_start_a_stdio_server(payload: Payload) -> None:
    """What daphne imports (config.asgi) never allows stdio servers: whatever code path asks,
    the pool refuses before any process starts."""
    probe = f"""
import django, sys
from config.asgi import application
from apps.tools.executors.mcp_pool import McpClientPool, McpServerConfig, StdioNotAllowed
config = McpServerConfig(key="x", transport="stdio", command=sys.executable,
                         args=("-c", {payload.code!r}))
try:
    McpClientPool().list_tools(config, timeout_s=10)
except StdioNotAllowed as exc:
    print("refused:", exc.code)
    sys.exit(0)
print("started")
sys.exit(1)
"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "refused: stdio_not_allowed_here" in result.stdout
    assert not payload.ran()


def test_discovery_answers_503_when_no_worker_takes_it(
    world: World, settings: Any, celery_worker: WorkerProcess
) -> None:
    settings.WARDEN_MCP_DISCOVERY_QUEUE = f"nobody-listens-{uuid.uuid4().hex}"
    settings.WARDEN_MCP_DISCOVERY_TIMEOUT_SECONDS = 0.1
    client = client_for(world.tenant_a, ["write"])
    created = client.post(
        "/api/v1/mcp-servers",
        {"name": "dump", "transport": "stdio", "template": "envdump", "connect_timeout_s": 0.1},
        format="json",
    )
    assert created.status_code == 201, created.json()
    response = client.post(f"/api/v1/mcp-servers/{created.json()['id']}/discover")
    assert response.status_code == 503, response.json()
    assert response.json()["code"] == "discovery_unavailable"
    assert not Tool.objects.filter(tenant=world.tenant_a).exists()


def test_server_configuration_is_redacted_for_non_admins(
    world: World, alice_client: APIClient, bob_client: APIClient
) -> None:
    admin = client_for(world.tenant_a, ["admin"])
    created = admin.post(
        "/api/v1/mcp-servers",
        {
            "name": "dump",
            "transport": "stdio",
            "template": "envdump",
            "env": {"GREETING": "internal host name"},
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["env"] == {"GREETING": "internal host name"}
    server_id = created.json()["id"]
    McpServer.objects.create(
        tenant=world.tenant_a,
        name="git",
        transport="stdio",
        template="git",
        args={"--repository": "private-project"},
        status="error",
        last_error="server_misconfigured: --repository private-project has no .git",
    )

    def seen(client: APIClient) -> list[dict[str, Any]]:
        one = client.get(f"/api/v1/mcp-servers/{server_id}")
        listing = client.get("/api/v1/mcp-servers")
        assert one.status_code == 200 and listing.status_code == 200
        return [one.json(), *listing.json()["results"]]

    for reader in (client_for(world.tenant_a, ["read"]), client_for(world.tenant_a, ["write"])):
        for body in seen(reader):
            assert body["config_redacted"] is True
            assert "internal host name" not in json.dumps(body)
            assert "private-project" not in json.dumps(body)
            if body["name"] == "git":
                assert body["last_error"] == "server_misconfigured: [redacted]"
    for body in seen(bob_client):  # a member (viewer) in the console's session
        assert body["config_redacted"] is True and "private-project" not in json.dumps(body)
        assert set(body["env"] or {}) <= {"GREETING"}

    for privileged in (admin, alice_client):  # an admin key, the owner
        shown = {b["name"]: b for b in seen(privileged)}
        assert shown["dump"]["env"] == {"GREETING": "internal host name"}
        assert shown["git"]["args"] == {"--repository": "private-project"}
        assert shown["git"]["config_redacted"] is False
        assert "private-project has no .git" in shown["git"]["last_error"]
