"""Browser single sign-on (authorization code + PKCE, state, nonce) against a real provider.

The provider is a small threaded HTTP server on 127.0.0.1 speaking the protocol: discovery,
JWKS, /authorize (redirects back with a code), /token (checks the code once, the PKCE verifier,
the client's secret and redirect URI; returns an RS256 ID token). Django's test client follows
the redirects by hand, as a browser would; the server side talks to the provider over HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client, override_settings

from apps.tenants import oidc
from tests.conftest import World

pytestmark = pytest.mark.django_db

CLIENT_ID = "warden-chat"
CLIENT_SECRET = "s3cret-of-the-client"


class Provider:
    """A minimal OpenID provider. `claims` overrides what the next ID tokens say."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
        self.jwks = json.dumps({"keys": [jwk]}).encode()
        self.codes: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, Any] = {}
        self.token_requests = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: dict[str, Any] | bytes, **headers: str) -> None:
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/.well-known/openid-configuration":
                    self._send(200, provider.discovery())
                elif url.path == "/jwks":
                    self._send(200, provider.jwks)
                elif url.path == "/authorize":
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
                        self._send(400, {"error": "invalid_request"})
                        return
                    code = f"code-{len(provider.codes)}-{time.monotonic_ns()}"
                    provider.codes[code] = q
                    back = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
                    self._send(302, b"", Location=back)
                else:
                    self._send(404, {"error": "not_found"})

            def do_POST(self) -> None:
                provider.token_requests += 1
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
                if self.headers.get("Authorization") != f"Basic {basic}":
                    self._send(401, {"error": "invalid_client"})
                    return
                grant = provider.codes.pop(form.get("code", ""), None)  # a code works once
                verifier = form.get("code_verifier", "")
                challenge = (
                    base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                    .rstrip(b"=")
                    .decode()
                )
                if (
                    grant is None
                    or grant["redirect_uri"] != form.get("redirect_uri")
                    or grant.get("code_challenge_method") != "S256"
                    or grant["code_challenge"] != challenge
                ):
                    self._send(400, {"error": "invalid_grant"})
                    return
                self._send(
                    200,
                    {
                        "id_token": provider.id_token(grant["nonce"]),
                        "token_type": "Bearer",
                        "access_token": "at",
                    },
                )

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "jwks_uri": self.issuer + "/jwks",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
        }

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": "idp-user-42",
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            "email": "alice@example.com",
            "email_verified": True,
            **self.claims,
        }
        key = payload.pop("_key", self.key)
        return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def provider() -> Iterator[Provider]:
    idp = Provider()
    oidc.reset_cache()
    with override_settings(
        OIDC_ISSUER=idp.issuer, OIDC_CLIENT_ID=CLIENT_ID, OIDC_CLIENT_SECRET=CLIENT_SECRET
    ):
        yield idp
    oidc.reset_cache()
    idp.server.shutdown()
    idp.server.server_close()


def to_provider(client: Client, next_url: str = "") -> str:
    """Press "Sign in with SSO": the URL the browser is sent to at the provider."""
    start = client.get("/chat/oidc/start" + (f"?next={next_url}" if next_url else ""))
    assert start.status_code == 302
    return str(start["Location"])


def back_from_provider(authorize_url: str) -> str:
    """The provider's answer to the browser: the callback path + query on our site."""
    answer = httpx.get(authorize_url, follow_redirects=False)
    assert answer.status_code == 302
    back = urlsplit(answer.headers["location"])
    assert back.netloc == "testserver"
    return f"{back.path}?{back.query}"


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_sso_signs_in_the_linked_account_and_lands_on_the_chat(
    world: World, provider: Provider
) -> None:
    client = Client()
    page = client.get("/chat/login/")
    assert b"Sign in with SSO" in page.content
    authorize = to_provider(client)
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(provider.issuer + "/authorize?")
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["redirect_uri"] == ["http://testserver/chat/oidc/callback"]
    assert query["state"][0] and query["nonce"][0] and query["state"] != query["nonce"]
    landed = client.get(back_from_provider(authorize))
    assert landed.status_code == 302 and landed["Location"] == "/chat/"
    assert client.session["_auth_user_id"] == str(world.alice.pk)
    assert client.get("/chat/").status_code == 200
    # Nothing was created: the person is the existing console account.
    assert provider.token_requests == 1


def test_next_is_kept_on_site_and_an_offsite_next_is_dropped(
    world: World, provider: Provider
) -> None:
    client = Client()
    landed = client.get(back_from_provider(to_provider(client, "/chat/%3Ftenant%3Dacme")))
    assert landed["Location"] == "/chat/?tenant=acme"
    evil = Client()
    landed = evil.get(back_from_provider(to_provider(evil, "https://evil.example/")))
    assert landed["Location"] == "/chat/"


def test_a_callback_with_another_state_is_refused(world: World, provider: Provider) -> None:
    # Login CSRF: an attacker's own code and state, delivered into the victim's browser.
    attacker, victim = Client(), Client()
    attackers_callback = back_from_provider(to_provider(attacker))
    to_provider(victim)
    refused = victim.get(attackers_callback)
    assert refused.status_code == 400
    assert b'data-code="invalid_state"' in refused.content
    assert not signed_in(victim)
    # A callback in a browser that never started a sign-in is refused the same way.
    stranger = Client()
    assert stranger.get(attackers_callback).status_code == 400 and not signed_in(stranger)
    assert provider.token_requests == 0


def test_a_replayed_callback_signs_in_nobody(world: World, provider: Provider) -> None:
    client = Client()
    callback = back_from_provider(to_provider(client))
    assert client.get(callback).status_code == 302
    client.post("/chat/logout/")
    assert not signed_in(client)
    again = client.get(callback)
    assert again.status_code == 400 and not signed_in(client)
    # Even with a fresh flow whose state is forced to the old one, the provider refuses
    # the used code (it is single-use), and nobody is signed in.
    to_provider(client)
    session = client.session
    flow = session["oidc_flow"]
    flow["state"] = parse_qs(urlsplit(callback).query)["state"][0]
    session["oidc_flow"] = flow
    session.save()
    replay = client.get(callback)
    assert replay.status_code == 400
    assert b'data-code="code_refused"' in replay.content
    assert not signed_in(client)


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"nonce": "someone-elses-nonce"}, "invalid_nonce"),
        ({"aud": "another-client"}, "invalid_audience"),
        ({"aud": ["another-client", CLIENT_ID], "azp": "another-client"}, "invalid_audience"),
        ({"iss": "http://127.0.0.1:1/"}, "invalid_issuer"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "token_expired"),
        (
            {"_key": rsa.generate_private_key(public_exponent=65537, key_size=2048)},
            "invalid_signature",
        ),
    ],
    ids=[
        "wrong-nonce",
        "wrong-audience",
        "other-azp",
        "wrong-issuer",
        "expired",
        "forged-signature",
    ],
)
def test_an_id_token_that_fails_a_check_signs_in_nobody(
    world: World, provider: Provider, claims: dict[str, Any], code: str
) -> None:
    provider.claims = claims
    client = Client()
    refused = client.get(back_from_provider(to_provider(client)))
    assert refused.status_code == 400
    assert f'data-code="{code}"'.encode() in refused.content
    assert not signed_in(client)


@pytest.mark.parametrize(
    "claims",
    [
        {"email": "nobody@example.com"},
        {"email_verified": False},
        {"email": None},
    ],
    ids=["unknown-email", "unverified-email", "no-email"],
)
def test_an_identity_linked_to_no_account_gets_a_clear_page(
    world: World, provider: Provider, claims: dict[str, Any]
) -> None:
    from django.contrib.auth.models import User

    users = User.objects.count()
    provider.claims = claims
    client = Client()
    refused = client.get(back_from_provider(to_provider(client)))
    assert refused.status_code == 403
    assert b"No Warden account is linked" in refused.content
    assert not signed_in(client)
    assert User.objects.count() == users  # never auto-created


def test_a_bearer_token_account_with_the_same_email_is_not_a_link(
    world: World, provider: Provider
) -> None:
    # The bearer-token path creates `oidc:<sub>` users with the token's (unverified) address;
    # such an account never becomes the target of a browser sign-in.
    from django.contrib.auth.models import User

    User.objects.create(username="oidc:someone", email="ghost@example.com")
    provider.claims = {"email": "ghost@example.com"}
    client = Client()
    assert client.get(back_from_provider(to_provider(client))).status_code == 403
    assert not signed_in(client)


def test_without_a_client_id_there_is_no_sso(world: World) -> None:
    with override_settings(OIDC_ISSUER="http://127.0.0.1:1", OIDC_CLIENT_ID=""):
        client = Client()
        assert b"Sign in with SSO" not in client.get("/chat/login/").content
        assert client.get("/chat/oidc/start").status_code == 404
        assert client.get("/chat/oidc/callback?code=x&state=y").status_code == 404


def test_an_unreachable_provider_is_a_503_page(world: World) -> None:
    oidc.reset_cache()
    with override_settings(OIDC_ISSUER="http://127.0.0.1:9", OIDC_CLIENT_ID=CLIENT_ID):
        response = Client().get("/chat/oidc/start")
    oidc.reset_cache()
    assert response.status_code == 503
    assert b'data-code="idp_unavailable"' in response.content


def test_the_console_login_offers_sso_and_returns_to_the_console(
    world: World, provider: Provider
) -> None:
    client = Client()
    page = client.get("/admin/login/?next=/admin/")
    assert page.status_code == 200
    assert b'id="sso-sign-in"' in page.content
    assert b"/chat/oidc/start?next=/admin/" in page.content
    landed = client.get(back_from_provider(to_provider(client, "/admin/")))
    assert landed["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200  # alice is staff
