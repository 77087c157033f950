"""The API throttles per key and per client address, and stops answering an address that
keeps presenting bad credentials: 429 {"code": "throttled"} with Retry-After."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import RequestFactory, override_settings
from rest_framework.test import APIClient

import config.settings.access as shipped
from apps.core.client_ip import client_ip
from apps.tenants.services import api_key_create
from tests.conftest import World

pytestmark = pytest.mark.django_db

GENEROUS = "100000/hour"


@pytest.fixture(autouse=True)
def fresh_counters() -> Iterator[None]:
    """Counters of this test only: its own cache key prefix in the real Redis."""
    caches = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"t-{uuid.uuid4().hex}"}}
    with override_settings(CACHES=caches):
        yield


def key_client(world: World, remote: str, scopes: list[str] | None = None) -> APIClient:
    _, raw = api_key_create(tenant=world.tenant_a, name="k", scopes=scopes or ["read"])
    client = APIClient(REMOTE_ADDR=remote)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def assert_throttled(response: Any) -> None:
    assert response.status_code == 429, response.content
    assert response.json()["code"] == "throttled"
    assert int(response["Retry-After"]) >= 1


@override_settings(
    WARDEN_API_RATE_PER_PRINCIPAL="3/hour",
    WARDEN_API_RATE_PER_ADDRESS=GENEROUS,
    WARDEN_API_AUTH_FAILURE_RATE=GENEROUS,
)
def test_each_key_is_throttled_on_its_own(world: World) -> None:
    busy = key_client(world, "127.0.0.31")
    for _ in range(3):
        assert busy.get("/api/v1/me").status_code == 200
    throttled = busy.get("/api/v1/me")
    assert_throttled(throttled)
    assert int(throttled["Retry-After"]) <= 3600
    # Another key from the same address has its own allowance.
    assert key_client(world, "127.0.0.31").get("/api/v1/me").status_code == 200


@override_settings(
    WARDEN_API_RATE_PER_PRINCIPAL="3/hour",
    WARDEN_API_RATE_PER_ADDRESS=GENEROUS,
    WARDEN_API_AUTH_FAILURE_RATE=GENEROUS,
)
def test_console_users_are_throttled_per_user(world: World) -> None:
    client = APIClient(REMOTE_ADDR="127.0.0.32")
    client.force_login(world.alice)
    for _ in range(3):
        assert client.get("/api/v1/me").status_code == 200
    assert_throttled(client.get("/api/v1/me"))


@override_settings(
    WARDEN_API_RATE_PER_PRINCIPAL=GENEROUS,
    WARDEN_API_RATE_PER_ADDRESS="4/hour",
    WARDEN_API_AUTH_FAILURE_RATE=GENEROUS,
)
def test_each_address_is_throttled_whatever_key_it_uses(world: World) -> None:
    for _ in range(4):
        assert key_client(world, "127.0.0.33").get("/api/v1/me").status_code == 200
    # A fresh key doesn't help, nor does a forged X-Forwarded-For (no trusted proxy).
    assert_throttled(key_client(world, "127.0.0.33").get("/api/v1/me"))
    assert_throttled(
        key_client(world, "127.0.0.33").get("/api/v1/me", HTTP_X_FORWARDED_FOR="127.0.0.99")
    )
    assert key_client(world, "127.0.0.34").get("/api/v1/me").status_code == 200


@override_settings(
    WARDEN_API_RATE_PER_PRINCIPAL=GENEROUS,
    WARDEN_API_RATE_PER_ADDRESS=GENEROUS,
    WARDEN_API_AUTH_FAILURE_RATE=shipped.WARDEN_API_AUTH_FAILURE_RATE,
)
def test_random_api_keys_hit_429_with_the_shipped_defaults(world: World) -> None:
    guesser = APIClient(REMOTE_ADDR="127.0.0.35")
    statuses = []
    for _ in range(200):
        guess = f"wdn_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
        response = guesser.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {guess}")
        statuses.append(response.status_code)
    assert 429 in statuses
    first = statuses.index(429)
    assert set(statuses[:first]) == {401}
    assert set(statuses[first:]) == {429}
    assert first <= 100
    # Once there, even a valid key from that address gets no answer (no oracle left) ...
    locked_out = key_client(world, "127.0.0.35").get("/api/v1/me")
    assert_throttled(locked_out)
    # ... while other addresses are unaffected.
    assert key_client(world, "127.0.0.36").get("/api/v1/me").status_code == 200


@override_settings(
    WARDEN_API_RATE_PER_PRINCIPAL=GENEROUS,
    WARDEN_API_RATE_PER_ADDRESS=GENEROUS,
    WARDEN_API_AUTH_FAILURE_RATE="5/hour",
)
def test_garbage_bearer_tokens_count_as_failures_too(world: World) -> None:
    guesser = APIClient(REMOTE_ADDR="127.0.0.37")
    statuses = [
        guesser.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer junk{i}").status_code
        for i in range(8)
    ]
    assert statuses == [401] * 5 + [429] * 3


@override_settings(
    WARDEN_API_RATE_PER_PRINCIPAL="2/hour",
    WARDEN_API_RATE_PER_ADDRESS="3/hour",
    WARDEN_API_AUTH_FAILURE_RATE=GENEROUS,
)
def test_a_request_refused_for_its_key_still_spends_its_address(world: World) -> None:
    busy = key_client(world, "127.0.0.42")
    statuses = [busy.get("/api/v1/me").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    # The key's refusal used the address's third request: a fresh key gets nothing more.
    assert_throttled(key_client(world, "127.0.0.42").get("/api/v1/me"))


@override_settings(
    WARDEN_API_RATE_PER_PRINCIPAL="1/hour",
    WARDEN_API_RATE_PER_ADDRESS="1/minute",
    WARDEN_API_AUTH_FAILURE_RATE=GENEROUS,
)
def test_with_both_windows_full_retry_after_is_the_later_end(world: World) -> None:
    client = key_client(world, "127.0.0.43")
    assert client.get("/api/v1/me").status_code == 200
    throttled = client.get("/api/v1/me")
    assert_throttled(throttled)
    # The address's window ends within a minute; retrying then would meet the key's.
    assert 60 < int(throttled["Retry-After"]) <= 3600


@override_settings(
    WARDEN_API_RATE_PER_PRINCIPAL=GENEROUS,
    WARDEN_API_RATE_PER_ADDRESS="2/hour",
    WARDEN_API_AUTH_FAILURE_RATE=GENEROUS,
)
def test_refused_credentials_do_not_spend_the_address_window(world: World) -> None:
    client = APIClient(REMOTE_ADDR="127.0.0.44")
    for i in range(4):
        bad = client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer wdn_{i}_nope")
        assert bad.status_code == 401
    assert client.get("/api/v1/me").status_code == 401  # no credentials at all
    honest = key_client(world, "127.0.0.44")
    assert [honest.get("/api/v1/me").status_code for _ in range(3)] == [200, 200, 429]


@override_settings(
    WARDEN_API_RATE_PER_PRINCIPAL=GENEROUS,
    WARDEN_API_RATE_PER_ADDRESS="1/hour",
    WARDEN_API_AUTH_FAILURE_RATE="2/hour",
)
def test_a_locked_out_address_hears_of_its_lockout_before_its_rate_window(world: World) -> None:
    client = key_client(world, "127.0.0.45")
    assert client.get("/api/v1/me").status_code == 200
    rate_limited = client.get("/api/v1/me")
    assert_throttled(rate_limited)
    assert rate_limited.json()["message"].startswith("Request was throttled.")
    guesser = APIClient(REMOTE_ADDR="127.0.0.45")
    for i in range(2):
        bad = guesser.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer wdn_{i}_nope")
        assert bad.status_code == 401
    # Both are used up now; the lockout is checked first, before the (right) key is read.
    locked_out = client.get("/api/v1/me")
    assert_throttled(locked_out)
    lockout = "Too many failed authentications from this address."
    assert locked_out.json()["message"].startswith(lockout)


def test_client_address_reads_forwarded_for_only_from_trusted_proxies() -> None:
    factory = RequestFactory()
    forged = factory.get("/", REMOTE_ADDR="127.0.0.40", HTTP_X_FORWARDED_FOR="127.0.0.41")
    assert client_ip(forged) == "127.0.0.40"
    with override_settings(WARDEN_TRUSTED_PROXIES=["127.0.0.40", "10.0.0.0/8"]):
        # The client wrote the left-most entry; our proxies appended the rest.
        chain = factory.get(
            "/",
            REMOTE_ADDR="127.0.0.40",
            HTTP_X_FORWARDED_FOR="127.0.0.66, 127.0.0.50, 10.1.2.3",
        )
        assert client_ip(chain) == "127.0.0.50"
        untrusted_peer = factory.get(
            "/", REMOTE_ADDR="127.0.0.60", HTTP_X_FORWARDED_FOR="127.0.0.50"
        )
        assert client_ip(untrusted_peer) == "127.0.0.60"
