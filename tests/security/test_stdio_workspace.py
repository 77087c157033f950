"""The git server's `--repository` must lie inside the tenant's own workspace: not the
platform's checkout, not another tenant's workspace, not through `..` or a symlink, not a
directory whose git repository is found by climbing to a parent, and not after a swap."""

from __future__ import annotations

import sys

import pytest

from apps.tools.models import McpServer, Tool
from apps.tools.stdio import tenant_workspace
from tests.conftest import ROOT, WorkerProcess, World, client_for
from tests.tools_django.conftest import make_git_repo

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_repository_outside_the_tenant_workspace_is_refused(world: World) -> None:
    own = make_git_repo(tenant_workspace(world.tenant_a.id, create=True) / "repo")
    theirs = make_git_repo(tenant_workspace(world.tenant_b.id, create=True) / "secret-repo")
    (own.parent / "to-theirs").symlink_to(theirs)
    (own.parent / "to-checkout").symlink_to(ROOT)
    (own.parent / "plain").mkdir()
    client = client_for(world.tenant_a, ["write"])
    # The old shape: any repository on the host.
    legacy = client.post(
        "/api/v1/mcp-servers",
        {
            "name": "git",
            "transport": "stdio",
            "command": sys.executable,
            "args": ["-m", "mcp_server_git", "--repository", str(ROOT)],
        },
        format="json",
    )
    assert legacy.status_code == 400, legacy.json()

    escapes = [
        str(ROOT),  # the platform's own checkout
        str(theirs),  # another tenant's repository
        f"../{world.tenant_b.id}/secret-repo",
        "repo/../../..",
        "to-theirs",  # a symlink out of the workspace
        "to-checkout",
        ".",  # the workspace itself: git would climb to the checkout around var/
        "plain",  # the same, from a subdirectory
        "repo/.git/..//../plain",
        "~/repo",
        "$HOME/../..",
    ]
    for path in escapes:
        response = client.post(
            "/api/v1/mcp-servers",
            {
                "name": "git",
                "transport": "stdio",
                "template": "git",
                "args": {"--repository": path},
            },
            format="json",
        )
        assert response.status_code == 400, (path, response.json())
        assert response.json()["code"] == "argument_invalid", (path, response.json())
    missing = client.post(
        "/api/v1/mcp-servers",
        {"name": "git", "transport": "stdio", "template": "git"},
        format="json",
    )
    assert missing.status_code == 400 and missing.json()["code"] == "argument_missing"
    assert not McpServer.objects.filter(tenant=world.tenant_a).exists()

    # Its own repository, relative or absolute, is fine.
    for name, path in (("git", "repo"), ("git-abs", str(own))):
        created = client.post(
            "/api/v1/mcp-servers",
            {"name": name, "transport": "stdio", "template": "git", "args": {"--repository": path}},
            format="json",
        )
        assert created.status_code == 201, created.json()


def test_a_repository_swapped_for_a_symlink_after_registration_is_refused_at_start(
    world: World, celery_worker: WorkerProcess
) -> None:
    workspace = tenant_workspace(world.tenant_a.id, create=True)
    own = make_git_repo(workspace / "repo")
    theirs = make_git_repo(tenant_workspace(world.tenant_b.id, create=True) / "secret-repo")
    client = client_for(world.tenant_a, ["write"])
    created = client.post(
        "/api/v1/mcp-servers",
        {"name": "git", "transport": "stdio", "template": "git", "args": {"--repository": "repo"}},
        format="json",
    )
    assert created.status_code == 201, created.json()

    own.rename(workspace / "old-repo")
    (workspace / "repo").symlink_to(theirs)
    response = client.post(f"/api/v1/mcp-servers/{created.json()['id']}/discover")
    assert response.status_code == 502, response.json()
    body = response.json()
    assert body["code"] == "discovery_failed"
    assert body["details"] == {"reason": "server_misconfigured", "problem": "argument_invalid"}
    assert not Tool.objects.filter(tenant=world.tenant_a).exists()
