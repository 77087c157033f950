"""Browser single sign-on: the OpenID Connect authorization-code flow with PKCE, state and nonce.

On when `OIDC_ISSUER` and `OIDC_CLIENT_ID` are set; otherwise these URLs are 404 and the sign-in
pages show no button. Endpoints come from the issuer's discovery document; the ID token is checked
by `apps.tenants.oidc.verify_id_token` (the same JWKS and PyJWT code as bearer tokens).

Who is signed in: the one active console account whose e-mail equals the token's `email`, and only
when the provider says `email_verified`. Nobody is ever created here, and tenant membership still
comes from Warden; an address that matches no account (or several) gets a 403 page and no session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET

from apps.tenants import oidc
from apps.tenants.exceptions import AuthError

FLOW_KEY = "oidc_flow"
FLOW_MAX_AGE_SECONDS = 600
BACKEND = "django.contrib.auth.backends.ModelBackend"


def sso_enabled() -> bool:
    return bool(settings.OIDC_ISSUER and settings.OIDC_CLIENT_ID)


def _redirect_uri(request: HttpRequest) -> str:
    return settings.OIDC_REDIRECT_URI or request.build_absolute_uri(reverse("chat:oidc-callback"))


def _refuse(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse:
    return render(
        request,
        "chat/sso_error.html",
        {"code": code, "message": message, "login_url": reverse("chat:login")},
        status=status,
    )


def _endpoint(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise oidc.IdentityProviderUnavailable(f"OIDC discovery names no {name}.")
    return value


@require_GET
def sso_start(request: HttpRequest) -> HttpResponse:
    """Send the browser to the provider, remembering (in this session only) what must come back."""
    if not sso_enabled():
        raise Http404("Single sign-on is not configured.")
    try:
        authorize = _endpoint(oidc.discovery(), "authorization_endpoint")
    except oidc.IdentityProviderUnavailable:
        return _refuse(
            request, 503, "idp_unavailable", "The sign-in provider can't be reached. Try again."
        )
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    request.session[FLOW_KEY] = {
        "state": state,
        "nonce": nonce,
        "verifier": verifier,
        "next": next_url,
        "started": time.time(),
    }
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.OIDC_CLIENT_ID,
            "redirect_uri": _redirect_uri(request),
            "scope": settings.OIDC_SCOPES,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge.decode(),
            "code_challenge_method": "S256",
        }
    )
    return redirect(f"{authorize}{'&' if '?' in authorize else '?'}{query}")


def _exchange(request: HttpRequest, code: str, verifier: str) -> str:
    """The code for tokens at the token endpoint; returns the ID token (raises AuthError)."""
    token_url = _endpoint(oidc.discovery(), "token_endpoint")
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": _redirect_uri(request),
        "client_id": settings.OIDC_CLIENT_ID,
        "code_verifier": verifier,
    }
    # client_secret_basic (OIDC Core 9's default) for a confidential client; PKCE alone otherwise.
    auth = (
        (settings.OIDC_CLIENT_ID, settings.OIDC_CLIENT_SECRET)
        if settings.OIDC_CLIENT_SECRET
        else None
    )
    try:
        response = httpx.post(token_url, data=data, auth=auth, timeout=10)
    except httpx.HTTPError as exc:
        raise oidc.IdentityProviderUnavailable(f"OIDC token endpoint failed: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        raise AuthError(
            f"The provider refused the code ({error or response.status_code}).", code="code_refused"
        )
    id_token = body.get("id_token")
    if not isinstance(id_token, str):
        raise AuthError("The provider returned no ID token.", code="invalid_token")
    return id_token


def _linked_user(claims: dict[str, Any]) -> User | None:
    email = claims.get("email")
    if not isinstance(email, str) or not email or claims.get("email_verified") is not True:
        return None
    # Accounts the bearer-token path made (`oidc:<sub>`) carry an unverified, token-chosen
    # address: they never match. Exactly one account, or none.
    users = list(
        User.objects.filter(email__iexact=email, is_active=True).exclude(
            username__startswith="oidc:"
        )[:2]
    )
    return users[0] if len(users) == 1 else None


@require_GET
def sso_callback(request: HttpRequest) -> HttpResponse:
    if not sso_enabled():
        raise Http404("Single sign-on is not configured.")
    # The flow is used once: popped before anything else, so a replayed callback finds nothing.
    flow = request.session.pop(FLOW_KEY, None)
    state = request.GET.get("state", "")
    if (
        not isinstance(flow, dict)
        or not state
        or not hmac.compare_digest(str(flow.get("state", "")), state)
    ):
        return _refuse(
            request,
            400,
            "invalid_state",
            "This sign-in did not start here, or was already used. "
            "Start again from the sign-in page.",
        )
    if time.time() - float(flow.get("started", 0)) > FLOW_MAX_AGE_SECONDS:
        return _refuse(request, 400, "flow_expired", "This sign-in took too long. Start again.")
    if request.GET.get("error"):
        return _refuse(
            request,
            400,
            "provider_error",
            f"The sign-in provider said: {request.GET.get('error')}. "
            "Start again, or use your console account.",
        )
    code = request.GET.get("code", "")
    if not code:
        return _refuse(request, 400, "missing_code", "The provider sent no code. Start again.")
    try:
        id_token = _exchange(request, code, str(flow["verifier"]))
        claims = oidc.verify_id_token(
            id_token, client_id=settings.OIDC_CLIENT_ID, nonce=str(flow["nonce"])
        )
    except oidc.IdentityProviderUnavailable:
        return _refuse(
            request, 503, "idp_unavailable", "The sign-in provider can't be reached. Try again."
        )
    except AuthError as exc:
        return _refuse(request, 400, exc.code, f"The sign-in was refused: {exc.message}")
    user = _linked_user(claims)
    if user is None:
        return _refuse(
            request,
            403,
            "no_linked_account",
            "No Warden account is linked to this single sign-on identity (a verified e-mail "
            "matching exactly one account). Ask a tenant admin to invite you, or use your "
            "console account.",
        )
    login(request, user, backend=BACKEND)
    return redirect(flow.get("next") or reverse("chat:index"))
