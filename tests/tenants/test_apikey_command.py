"""`manage.py apikey create|list|revoke`: the operator's CLI for API keys."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from apps.tenants.models import ApiKey
from apps.tenants.services import api_key_create
from tests.conftest import ROOT, World, _test_env

pytestmark = pytest.mark.django_db

KEY_LINE = re.compile(r"^wdn_[0-9a-f]{8}_[A-Za-z0-9_-]{43}\n$")


def apikey(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("apikey", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def new_endpoint(client: APIClient) -> int:
    return client.post(
        "/api/v1/model-endpoints",
        {"name": "remote", "provider": "openai", "model": "gpt", "base_url": "https://x.test"},
        format="json",
    ).status_code


def test_create_prints_only_the_key_and_it_authenticates_with_those_scopes(world: World) -> None:
    out, err = apikey("create", "--tenant", "acme", "--scopes", "read", "--name", "ci")
    assert KEY_LINE.match(out), out  # the key and a newline: `KEY=$(…)` captures just it
    raw = out.strip()
    key = ApiKey.objects.get()
    assert raw not in err and key.prefix in err and "ci" in err and "shown only" in err
    assert (key.tenant, key.name, key.scopes, key.expires_at) == (
        world.tenant_a,
        "ci",
        ["read"],
        None,
    )

    reader = bearer(raw)
    me = reader.get("/api/v1/me").json()
    assert (me["tenant"]["slug"], me["scopes"], me["via"]) == ("acme", ["read"], "api_key")
    assert new_endpoint(reader) == 403  # read only
    assert reader.get("/api/v1/api-keys").status_code == 403  # not admin

    out, _ = apikey("create", "--tenant", "acme", "--scopes", " write , read ")
    writer = bearer(out.strip())
    assert writer.get("/api/v1/me").json()["scopes"] == ["read", "write"]
    assert new_endpoint(writer) == 201
    assert writer.get("/api/v1/api-keys").status_code == 403  # still not admin
    # The key is bound to its tenant: naming another one changes nothing.
    assert writer.get("/api/v1/me", HTTP_X_WARDEN_TENANT="globex").json()["tenant"]["slug"] == (
        "acme"
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2)),
     ("90m", timedelta(minutes=90)), ("P7D", timedelta(days=7))],
)  # fmt: skip
def test_expires_sets_the_expiry(world: World, given: str, expected: timedelta) -> None:
    before = timezone.now()
    out, err = apikey("create", "--tenant", "acme", "--scopes", "read", "--expires", given)
    key = ApiKey.objects.get()
    assert key.expires_at is not None
    assert before + expected <= key.expires_at <= timezone.now() + expected
    assert "expires" in err
    assert bearer(out.strip()).get("/api/v1/me").status_code == 200


def test_an_expired_cli_key_is_refused_by_the_api(world: World) -> None:
    out, _ = apikey("create", "--tenant", "acme", "--scopes", "read", "--expires", "1h")
    ApiKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(out.strip()).get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "api_key_expired"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nope", "--scopes", "read"], "No active tenant 'nope'"),
        (["--tenant", "acme", "--scopes", "read,root"], 'scopes: "root" is not a valid choice'),
        (["--tenant", "acme", "--scopes", " , "], "scopes: This list may not be empty"),
        (["--tenant", "acme", "--scopes", "read", "--expires", "soon"], "is not a duration"),
        (["--tenant", "acme", "--scopes", "read", "--expires", "0d"], "longer than zero"),
        (["--tenant", "acme", "--scopes", "read", "--expires=-P1D"], "longer than zero"),
        (["--tenant", "acme", "--scopes", "read", "--expires", "999999999w"], "too far away"),
        (["--tenant", "acme", "--scopes", "read", "--name", "x" * 201], "name: Ensure"),
    ],
)
def test_bad_input_is_a_clear_error_and_creates_nothing(
    world: World, args: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=re.escape(message)):
        apikey("create", *args)
    assert not ApiKey.objects.exists()


def test_an_inactive_tenant_is_refused(world: World) -> None:
    world.tenant_a.is_active = False
    world.tenant_a.save()
    with pytest.raises(CommandError, match="No active tenant 'acme'"):
        apikey("create", "--tenant", "acme", "--scopes", "read")


def test_list_shows_keys_of_that_tenant_only_and_never_a_secret(world: World) -> None:
    mine, raw = api_key_create(tenant=world.tenant_a, name="deploy-bot", scopes=["read"])
    revoked, _ = api_key_create(tenant=world.tenant_a, name="old", scopes=["admin"])
    revoked.revoked_at = timezone.now()
    revoked.save()
    theirs, _ = api_key_create(tenant=world.tenant_b, name="globex-bot", scopes=["read"])

    out, _ = apikey("list", "--tenant", "acme")
    lines = out.splitlines()
    assert len(lines) == 2
    assert next(line for line in lines if mine.prefix in line).split()[1:4] == [
        "deploy-bot", "read", "active",
    ]  # fmt: skip
    assert "revoked" in next(line for line in lines if revoked.prefix in line)
    assert theirs.prefix not in out and "globex-bot" not in out
    assert raw not in out and raw.split("_", 2)[2] not in out


def test_revoke_ends_the_key_and_only_in_its_tenant(world: World) -> None:
    key, raw = api_key_create(tenant=world.tenant_a, name="ci", scopes=["read"])
    assert bearer(raw).get("/api/v1/me").status_code == 200

    with pytest.raises(CommandError, match="No API key"):
        apikey("revoke", key.prefix, "--tenant", "globex")  # another tenant's key: not found
    with pytest.raises(CommandError, match="No API key 'deadbeef'"):
        apikey("revoke", "deadbeef", "--tenant", "acme")
    assert bearer(raw).get("/api/v1/me").status_code == 200

    _, err = apikey("revoke", f"wdn_{key.prefix}", "--tenant", "acme")
    assert f"revoked API key {key.prefix}" in err
    response = bearer(raw).get("/api/v1/me")
    assert response.status_code == 401 and response.json()["code"] == "api_key_revoked"

    _, err = apikey("revoke", raw, "--tenant", "acme")  # the whole key works too; idempotent
    assert "already revoked" in err


@pytest.mark.django_db(transaction=True)
def test_a_script_captures_the_key_and_failures_exit_non_zero(world: World) -> None:
    """As an operator's script runs it: a new process, stdout captured, exit status."""

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "apikey", *args],
            cwd=ROOT,
            env=_test_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    made = manage("create", "--tenant", "acme", "--scopes", "read,write", "--expires", "30d")
    assert made.returncode == 0, made.stderr
    assert KEY_LINE.match(made.stdout), made.stdout
    assert bearer(made.stdout.strip()).get("/api/v1/me").json()["scopes"] == ["read", "write"]

    refused = manage("create", "--tenant", "acme", "--scopes", "superuser")
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert '"superuser" is not a valid choice' in refused.stderr
