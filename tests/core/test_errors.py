"""Bad input gets a JSON 4xx with a stable code, never a 500 or a stack trace."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from apps.core.api.errors import exception_handler
from apps.core.exceptions import TooManyRequests, Unavailable
from tests.conftest import World, client_for

pytestmark = pytest.mark.django_db


def test_malformed_json_is_a_400_with_a_code(world: World) -> None:
    client = client_for(world.tenant_a)
    response = client.generic(
        "POST", "/api/v1/api-keys", '{"name": "x", "scopes": [', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"
    assert "JSON parse error" in response.json()["message"]


def test_unknown_fields_are_refused_not_ignored(world: World) -> None:
    client = client_for(world.tenant_a)
    response = client.post(
        "/api/v1/api-keys",
        {"name": "x", "scopes": ["read"], "expires": "2030-01-01"},
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "unknown_field"
    assert "expires" in body["details"]


def test_missing_fields_say_which(world: World) -> None:
    response = client_for(world.tenant_a).post("/api/v1/api-keys", {"name": "x"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert "scopes" in response.json()["details"]


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_oversized_body_is_a_413(world: World) -> None:
    response = client_for(world.tenant_a).post(
        "/api/v1/api-keys", {"name": "x" * 5000, "scopes": ["read"]}, format="json"
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_wrong_content_type_is_a_415(world: World) -> None:
    response = client_for(world.tenant_a).generic(
        "POST", "/api/v1/api-keys", "name=x", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_unknown_api_route_is_json_404() -> None:
    response = APIClient().get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_malformed_uuid_in_path_is_json_404(world: World) -> None:
    response = client_for(world.tenant_a).get("/api/v1/api-keys/not-a-uuid")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_unauthenticated_is_401_with_challenge() -> None:
    response = APIClient().get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_method_not_allowed_is_json(world: World) -> None:
    response = client_for(world.tenant_a).put("/api/v1/me", {}, format="json")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_request_id_is_accepted_and_echoed(world: World) -> None:
    client = client_for(world.tenant_a)
    response = client.get("/api/v1/me", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"
    generated = client.get("/api/v1/me")
    assert len(generated["X-Request-ID"]) == 32
    # A value unsafe to log (newline injection) is replaced, not echoed.
    unsafe = client.get("/api/v1/me", HTTP_X_REQUEST_ID="bad\nid")
    assert unsafe["X-Request-ID"] != "bad\nid"


def test_logs_are_json_and_carry_the_request_id(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import logging

    from apps.core.logging import RequestIdFilter
    from config.settings.logging import LOGGING

    handler = logging.StreamHandler()
    from pythonjsonlogger.json import JsonFormatter

    fmt = LOGGING["formatters"]["json"]
    handler.setFormatter(JsonFormatter(fmt["fmt"], rename_fields=fmt["rename_fields"]))
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("warden.request")
    logger.addHandler(handler)
    try:
        client_for(world.tenant_a).get("/api/v1/me", HTTP_X_REQUEST_ID="trace-me-1")
    finally:
        logger.removeHandler(handler)
    lines = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    record = next(r for r in lines if r.get("path") == "/api/v1/me")
    assert record["request_id"] == "trace-me-1"
    assert record["status"] == 200
    assert record["level"] == "INFO"


def test_domain_errors_with_a_wait_answer_retry_after() -> None:
    """A rate limit is a 429 and says when to come back; so may a 503."""
    limited = exception_handler(
        TooManyRequests("Tenant rpm used up.", retry_after=2.2, details={"scope": "tenant"}), {}
    )
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert limited.data == {
        "code": "rate_limited",
        "message": "Tenant rpm used up.",
        "details": {"scope": "tenant"},
    }
    busy = exception_handler(Unavailable("Queue full.", code="backpressure", retry_after=10), {})
    assert (busy.status_code, busy.headers["Retry-After"]) == (503, "10")
    assert "Retry-After" not in exception_handler(Unavailable("Down."), {}).headers
