"""A tenant's write key cannot make a stdio MCP server run its code: not through environment
variables (interpreter, loader, shell), not through extra arguments, not through the auth
secret's variable, not by naming a command. Each payload would leave a marker file if it ran;
a server that slipped through would be discovered on the real worker, where it would run."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from rest_framework.test import APIClient

from apps.tools.models import McpServer
from tests.conftest import WorkerProcess, World, client_for
from tests.security.conftest import Payload

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _register_then_discover(client: APIClient, body: dict[str, Any]) -> Any:
    """What an attacker does: register, and if that works, have the server started."""
    response = client.post("/api/v1/mcp-servers", body, format="json")
    if response.status_code == 201:
        client.post(f"/api/v1/mcp-servers/{response.json()['id']}/discover", format="json")
    return response


def _env_payloads(payload: Payload) -> list[dict[str, str]]:
    return [
        {"PYTHONPATH": str(payload.site_dir)},
        {"PYTHONSTARTUP": str(payload.site_dir / "sitecustomize.py"), "PYTHONINSPECT": "1"},
        {"PYTHONWARNINGS": "ignore::sitecustomize.Warning", "PYTHONPATH": str(payload.site_dir)},
        {"PYTHONHOME": str(payload.site_dir)},
        {"BASH_ENV": str(payload.script)},
        {"ENV": str(payload.script)},
        {"LD_PRELOAD": str(payload.site_dir / "evil.so")},
        {"LD_LIBRARY_PATH": str(payload.site_dir)},
        {"GIT_SSH_COMMAND": str(payload.script)},
        {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.fsmonitor"},
        {"NODE_OPTIONS": f"--require {payload.script}"},
        {"PERL5OPT": f"-Mdo={payload.script}"},
        {"PATH": str(payload.site_dir)},
        {"HOME": str(payload.site_dir)},
    ]


def test_interpreter_loader_and_shell_variables_are_refused(
    world: World, payload: Payload, celery_worker: WorkerProcess
) -> None:
    client = client_for(world.tenant_a, ["write"])
    for env in _env_payloads(payload):
        response = _register_then_discover(
            client, {"name": "time", "transport": "stdio", "template": "time", "env": env}
        )
        assert response.status_code == 400, (env, response.json())
        assert response.json()["code"] == "env_not_allowed", (env, response.json())
    # Even a template's own variables take only what its validator allows.
    bad_value = _register_then_discover(
        client,
        {
            "name": "dump",
            "transport": "stdio",
            "template": "envdump",
            "env": {"GREETING": "$(touch /tmp/x)"},
        },
    )
    assert bad_value.status_code == 400 and bad_value.json()["code"] == "env_invalid"
    assert not McpServer.objects.filter(tenant=world.tenant_a).exists()
    assert not payload.ran()


def test_the_auth_secret_cannot_be_put_in_an_interpreter_variable(
    world: World, payload: Payload, celery_worker: WorkerProcess
) -> None:
    client = client_for(world.tenant_a, ["write"])
    for template in ("time", "secured-time"):
        for name in ("PYTHONPATH", "LD_PRELOAD", "BASH_ENV"):
            response = _register_then_discover(
                client,
                {
                    "name": "time",
                    "transport": "stdio",
                    "template": template,
                    "auth_env": name,
                    "auth_secret": str(payload.site_dir),
                },
            )
            assert response.status_code == 400, response.json()
            assert response.json()["code"] == "env_not_allowed"
    assert not payload.ran()


def test_a_tenant_cannot_choose_the_command_or_add_arguments(
    world: World, payload: Payload, celery_worker: WorkerProcess
) -> None:
    client = client_for(world.tenant_a, ["write"])
    # The old shape: a command line of the tenant's choosing.
    for legacy in (
        {"command": sys.executable, "args": ["-c", payload.code]},
        {"command": sys.executable, "args": ["-m", "mcp_server_time"], "env": {}},
        {"command": "/bin/sh", "args": [str(payload.script)]},
    ):
        response = _register_then_discover(client, {"name": "time", "transport": "stdio", **legacy})
        assert response.status_code == 400, (legacy, response.json())
    # Arguments the template does not declare, or values that would read as options.
    cases: list[tuple[Any, str]] = [
        ({"-c": payload.code}, "argument_not_allowed"),
        ({"--local-timezone": "UTC", "-X": "importtime"}, "argument_not_allowed"),
        ({"--local-timezone": "--help"}, "argument_invalid"),
        ({"--local-timezone": "UTC; sh " + str(payload.script)}, "argument_invalid"),
        (["-c", payload.code], "validation_error"),
    ]
    for args, code in cases:
        response = _register_then_discover(
            client, {"name": "time", "transport": "stdio", "template": "time", "args": args}
        )
        assert response.status_code == 400, (args, response.json())
        assert response.json()["code"] == code, (args, response.json())
    unknown = _register_then_discover(
        client, {"name": "sh", "transport": "stdio", "template": "shell"}
    )
    assert unknown.status_code == 400 and unknown.json()["code"] == "template_unknown"
    assert not McpServer.objects.filter(tenant=world.tenant_a).exists()
    assert not payload.ran()


@pytest.mark.parametrize(
    "variable", ["PYTHONPATH", "LD_PRELOAD", "BASH_ENV", "GIT_SSH_COMMAND", "NODE_OPTIONS"]
)
def test_a_template_that_lets_tenants_set_such_a_variable_is_refused(
    world: World, settings: Any, variable: str
) -> None:
    settings.WARDEN_MCP_STDIO_TEMPLATES = {
        "time": {
            "command": ["{python}", "-m", "mcp_server_time"],
            "env": {variable: {"type": "regex", "pattern": ".*"}},
        }
    }
    with pytest.raises(SystemCheckError, match=rf"tools\.E001.*{variable}"):
        call_command("check")
    # And nothing stdio is accepted while the templates are wrong.
    response = client_for(world.tenant_a, ["write"]).post(
        "/api/v1/mcp-servers",
        {"name": "time", "transport": "stdio", "template": "time", "env": {variable: "x"}},
        format="json",
    )
    assert response.status_code == 503, response.json()
    assert response.json()["code"] == "stdio_templates_invalid"
