"""/metrics is not public: a bearer token when one is configured; otherwise loopback only,
and nobody at all where loopback is not allowed (production)."""

from __future__ import annotations

import importlib

import pytest
from django.test import Client, override_settings

TOKEN = "metrics-" + "s" * 32


def scrape(remote: str = "127.0.0.1", token: str | None = None) -> object:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return Client(REMOTE_ADDR=remote).get("/metrics", **headers)


def test_without_a_token_only_loopback_may_scrape() -> None:
    outside = scrape(remote="192.0.2.10")
    assert outside.status_code == 403
    assert outside.json()["code"] == "metrics_forbidden"
    assert b"python_info" not in outside.content
    # A forged X-Forwarded-For doesn't make an outside client local.
    forged = Client(REMOTE_ADDR="192.0.2.10").get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert forged.status_code == 403
    assert scrape().status_code == 200


@override_settings(WARDEN_METRICS_ALLOW_LOOPBACK=False)
def test_production_without_a_token_answers_nobody() -> None:
    response = scrape()
    assert response.status_code == 403
    assert b"python_info" not in response.content


@override_settings(WARDEN_METRICS_TOKEN=TOKEN)
def test_with_a_token_it_is_required_even_from_loopback() -> None:
    for token in (None, "wrong", TOKEN[:-1]):
        refused = scrape(token=token)
        assert refused.status_code == 401, token
        assert refused.json()["code"] == "metrics_token_required"
        assert refused["WWW-Authenticate"].startswith("Bearer")
    allowed = scrape(remote="192.0.2.10", token=TOKEN)
    assert allowed.status_code == 200
    assert b"python_info" in allowed.content


def test_token_can_come_from_a_file(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "metrics_token"  # type: ignore[operator]
    secret.write_text(TOKEN + "\n")
    monkeypatch.setenv("WARDEN_METRICS_TOKEN_FILE", str(secret))
    import config.settings.access as access

    try:
        assert importlib.reload(access).WARDEN_METRICS_TOKEN == TOKEN
    finally:
        monkeypatch.delenv("WARDEN_METRICS_TOKEN_FILE")
        importlib.reload(access)
