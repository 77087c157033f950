"""OIDC JWT bearer tokens verified against a JWKS served over real HTTP on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import override_settings
from rest_framework.test import APIClient

from apps.tenants import oidc
from apps.tenants.models import Membership
from tests.conftest import World

pytestmark = pytest.mark.django_db

AUDIENCE = "warden-api"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Idp:
    """A minimal issuer: discovery document and JWKS over HTTP, and a token minter."""

    def __init__(self) -> None:
        self.key = _key()
        self.kid = "key-1"
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        jwks = json.dumps({"keys": [jwk]}).encode()
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = json.dumps(
                        {"issuer": idp.issuer, "jwks_uri": idp.issuer + "/jwks"}
                    ).encode()
                elif self.path == "/jwks":
                    body = jwks
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "user-123",
            "iat": now,
            "exp": now + 300,
            "tenant": "acme",
            "roles": ["operator"],
            "email": "sso@example.com",
            **claims,
        }
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture
def idp() -> Iterator[Idp]:
    server = Idp()
    oidc.reset_cache()
    with override_settings(OIDC_ISSUER=server.issuer, OIDC_AUDIENCE=AUDIENCE, OIDC_JWKS_URL=""):
        yield server
    oidc.reset_cache()
    server.server.shutdown()


def call(token: str, path: str = "/api/v1/me") -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(path)


def test_good_token_maps_claims_to_user_tenant_and_roles(world: World, idp: Idp) -> None:
    response = call(idp.token())
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["via"] == "jwt"
    assert body["tenant"]["slug"] == "acme"
    assert body["roles"] == ["operator"]
    assert body["user"]["username"] == "oidc:user-123"


def test_token_cannot_claim_a_local_user_by_name(world: World, idp: Idp) -> None:
    response = call(idp.token(preferred_username="alice", sub="attacker"))
    assert response.json()["user"]["username"] == "oidc:attacker"
    assert not Membership.objects.filter(user__username="oidc:attacker").exists()


def test_wrong_issuer_is_refused(world: World, idp: Idp) -> None:
    response = call(idp.token(iss="https://evil.example.com"))
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_issuer"


def test_wrong_audience_is_refused(world: World, idp: Idp) -> None:
    response = call(idp.token(aud="someone-else"))
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_audience"


def test_expired_token_is_refused(world: World, idp: Idp) -> None:
    past = int(time.time()) - 3600
    response = call(idp.token(iat=past - 60, exp=past))
    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"


def test_bad_signature_is_refused(world: World, idp: Idp) -> None:
    forged = idp.token(key=_key())  # same kid, different private key
    response = call(forged)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"


def test_unknown_tenant_claim_is_refused(world: World, idp: Idp) -> None:
    response = call(idp.token(tenant="nope"))
    assert response.status_code == 401
    assert response.json()["code"] == "unknown_tenant"


def test_garbage_bearer_is_refused(world: World, idp: Idp) -> None:
    response = call("not-a-jwt")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_unreachable_issuer_is_503_not_a_pass(world: World) -> None:
    oidc.reset_cache()
    with override_settings(OIDC_ISSUER="http://127.0.0.1:1", OIDC_AUDIENCE=AUDIENCE):
        token = jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256")
        response = call(token)
    oidc.reset_cache()
    assert response.status_code == 503
    assert response.json()["code"] == "identity_provider_unavailable"


def test_jwt_identity_is_isolated_to_its_tenant(world: World, idp: Idp) -> None:
    response = call(idp.token(tenant="globex", roles=["admin"]), "/api/v1/members")
    assert response.status_code == 200
    assert {m["username"] for m in response.json()["results"]} == {"charlie"}
