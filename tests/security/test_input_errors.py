"""No debug pages and no HTML under /api/: unknown paths and malformed ids are JSON 404s
whatever DEBUG says; `make run`'s settings keep DEBUG off unless asked; a forged Host header
gets a plain 400 that shows no settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from apps.llm.models import ModelEndpoint
from tests.conftest import World, client_for

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]

API_MISSES = [
    "/api/",
    "/api/v1/no-such-thing",
    "/api/v2/sessions",
    "/api/v1/sessions/not-a-uuid/turns",
    "/api/v1/sessions/not-a-uuid/events",
    "/api/v1/sessions/not-a-uuid/state",
    "/api/v1/sessions/not-a-uuid/audit",
    "/api/v1/turns/123/steps",
    "/api/v1/model-endpoints/%00",
    "/api/v1/agents/00000000-0000-0000-0000-00000000000g",
]


def test_unknown_api_paths_and_malformed_ids_are_json_404s_even_with_debug(world: World) -> None:
    client = client_for(world.tenant_a)
    for debug in (True, False):
        with override_settings(DEBUG=debug):
            for path in API_MISSES:
                for method in ("get", "post", "delete"):
                    response = getattr(client, method)(path)
                    assert response.status_code == 404, (debug, method, path)
                    assert response["Content-Type"] == "application/json", (debug, path)
                    body = response.json()
                    assert body["code"] == "not_found"
                    assert "URLconf" not in body["message"]
                    assert "api-key-list" not in response.content.decode()
            # Outside /api/ Django's own pages stay (HTML, debug or not).
            page = client.get("/no-such-page")
            assert page.status_code == 404
            assert page["Content-Type"].startswith("text/html")


def _dev_settings(tmp_path: Path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `script` under config.settings.dev, as `make run` does, in a fresh interpreter.

    DATABASE_URL / REDIS_URL point at closed loopback ports so nothing embedded starts and
    nothing is reached; DJANGO_SECRET_KEY is set so the settings need no var/secret_key.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "WARDEN_"))}
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            **base,
            "DJANGO_SETTINGS_MODULE": "config.settings.dev",
            "DATABASE_URL": "postgres://warden:secret-db-password@127.0.0.1:1/warden",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "DJANGO_SECRET_KEY": "dev-test-key",
            "WARDEN_VAR_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


_PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
css = Client(HTTP_HOST="localhost").get("/static/admin/css/base.css")
forged = Client(HTTP_HOST="attacker.example").get("/admin/login/")
api = Client(HTTP_HOST="localhost").get("/api/v1/sessions/not-a-uuid/turns")
print(json.dumps({
    "debug": settings.DEBUG,
    "css": [css.status_code, css.get("Content-Type", "")],
    "forged": [forged.status_code, forged.content.decode()],
    "api": [api.status_code, api.get("Content-Type", "")],
}))
"""


def test_dev_settings_serve_no_debug_pages_unless_asked(tmp_path: Path) -> None:
    result = _dev_settings(tmp_path, _PROBE)
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["debug"] is False
    # The console's CSS is still served without DEBUG (WhiteNoise, from the apps).
    assert probe["css"][0] == 200
    assert probe["css"][1].startswith("text/css")
    # A forged Host header: a plain 400 — no settings, no URLs, no secrets.
    status, page = probe["forged"]
    assert status == 400
    for leak in ("secret-db-password", "127.0.0.1:1", "DATABASE", "ALLOWED_HOSTS", "Traceback"):
        assert leak not in page
    assert probe["api"] == [404, "application/json"]
    assert list(tmp_path.iterdir()) == []  # importing the settings wrote nothing

    asked = _dev_settings(tmp_path, _PROBE, DJANGO_DEBUG="true")
    assert asked.returncode == 0, asked.stderr[-3000:]
    asked_probe = json.loads(asked.stdout.strip().splitlines()[-1])
    assert asked_probe["debug"] is True
    assert asked_probe["api"] == [404, "application/json"]  # no debug 404 under /api/ ever


def test_a_value_the_database_refuses_in_the_console_is_a_400(
    world: World, alice_client: APIClient
) -> None:
    form = {
        "tenant": str(world.tenant_a.id),
        "name": "nul",
        "provider": "openai",
        "model": "m",
        "base_url": "",
        "tier": "small",
        "context_window": "8192",
        "supports_tools": "on",
        "allowed_sensitivities": '["public"]',
        "price_input_per_mtok": "0.15",
        "price_output_per_mtok": "0.60",
        "timeout_s": "60",
        "priority": "100",
        "options": '{"header": "a\\u0000b"}',
        "is_active": "on",
    }
    response = alice_client.post("/admin/llm/modelendpoint/add/", form)
    assert response.status_code == 400
    assert b"Traceback" not in response.content
    assert not ModelEndpoint.objects.filter(name="nul").exists()
    # The same form without the NUL is saved: the 400 was about the value.
    form["options"] = '{"header": "ab"}'
    assert alice_client.post("/admin/llm/modelendpoint/add/", form).status_code == 302
    assert ModelEndpoint.objects.get(name="nul").options == {"header": "ab"}
