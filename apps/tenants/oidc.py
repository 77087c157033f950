"""OIDC JWT bearer tokens, verified against the issuer's JWKS (PyJWT).

Claims map to a user (by `sub`, never by a name the token chooses: a token
saying preferred_username=admin must not become the local admin), a tenant (by
slug) and roles.
"""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from django.conf import settings

from apps.tenants.exceptions import AuthError
from apps.tenants.models import Role


class IdentityProviderUnavailable(Exception):
    """The issuer's discovery document or JWKS could not be fetched."""


@dataclass(frozen=True)
class OidcClaims:
    subject: str
    username: str
    email: str
    tenant_slug: str
    roles: frozenset[str]
    expires_at: float | None = None


_clients: dict[str, jwt.PyJWKClient] = {}
_lock = threading.Lock()


def oidc_enabled() -> bool:
    return bool(settings.OIDC_ISSUER)


_discovery: dict[str, dict[str, Any]] = {}


def discovery() -> dict[str, Any]:
    """The issuer's `/.well-known/openid-configuration`, fetched once per process.

    Plain httpx, not the egress guard: the issuer is the operator's own setting (like the
    JWKS it names), never a destination a tenant or a token can choose."""
    issuer = settings.OIDC_ISSUER
    with _lock:
        cached = _discovery.get(issuer)
    if cached is not None:
        return cached
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = httpx.get(url, timeout=5)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise IdentityProviderUnavailable(f"OIDC discovery failed: {exc}") from exc
    if not isinstance(document, dict):
        raise IdentityProviderUnavailable("OIDC discovery document is not an object.")
    if document.get("issuer", issuer).rstrip("/") != issuer.rstrip("/"):
        # OIDC Discovery 4.3: the document must name the issuer it was fetched for.
        raise IdentityProviderUnavailable("OIDC discovery document names another issuer.")
    with _lock:
        _discovery[issuer] = document
    return document


def _jwks_url() -> str:
    if settings.OIDC_JWKS_URL:
        return str(settings.OIDC_JWKS_URL)
    try:
        return str(discovery()["jwks_uri"])
    except KeyError as exc:
        raise IdentityProviderUnavailable("OIDC discovery names no jwks_uri.") from exc


def _client() -> jwt.PyJWKClient:
    key = f"{settings.OIDC_ISSUER}|{settings.OIDC_JWKS_URL}"
    with _lock:
        client = _clients.get(key)
    if client is None:
        url = _jwks_url()  # outside the lock: discovery() takes it too
        with _lock:
            client = _clients.get(key) or jwt.PyJWKClient(
                url,
                cache_jwk_set=True,
                lifespan=settings.OIDC_JWKS_CACHE_SECONDS,
                timeout=5,
            )
            _clients[key] = client
    return client


def reset_cache() -> None:
    with _lock:
        _clients.clear()
        _discovery.clear()


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def _decode(token: str, **options: Any) -> dict[str, Any]:
    """`token`'s claims, checked with PyJWT against the issuer's JWKS and `options`
    (audience, require, ...); each failure as an AuthError with a stable code."""
    try:
        signing_key = _client().get_signing_key_from_jwt(token)
    except jwt.PyJWKClientConnectionError as exc:
        raise IdentityProviderUnavailable(str(exc)) from exc
    except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
        raise AuthError(f"Token signing key not recognised: {exc}", code="invalid_token") from exc
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            signing_key.key,
            algorithms=settings.OIDC_ALGORITHMS,
            issuer=settings.OIDC_ISSUER,
            leeway=settings.OIDC_LEEWAY_SECONDS,
            **options,
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("Token has expired.", code="token_expired") from exc
    except jwt.InvalidIssuerError as exc:
        raise AuthError("Token issuer is not trusted.", code="invalid_issuer") from exc
    except jwt.InvalidAudienceError as exc:
        raise AuthError("Token audience is wrong.", code="invalid_audience") from exc
    except jwt.InvalidSignatureError as exc:
        raise AuthError("Token signature is invalid.", code="invalid_signature") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"Invalid token: {exc}", code="invalid_token") from exc
    return claims


def verify_token(token: str) -> OidcClaims:
    claims = _decode(
        token,
        audience=settings.OIDC_AUDIENCE or None,
        options={"require": ["exp", "iss", "sub"], "verify_aud": bool(settings.OIDC_AUDIENCE)},
    )

    tenant_slug = claims.get(settings.OIDC_TENANT_CLAIM)
    if not isinstance(tenant_slug, str) or not tenant_slug:
        raise AuthError(
            f"Token has no {settings.OIDC_TENANT_CLAIM!r} claim.", code="missing_tenant_claim"
        )
    raw_roles = claims.get(settings.OIDC_ROLES_CLAIM) or []
    if isinstance(raw_roles, str):
        raw_roles = raw_roles.split()
    roles = frozenset(r for r in raw_roles if isinstance(r, str) and r in Role.values)
    return OidcClaims(
        subject=str(claims["sub"]),
        username=str(claims.get(settings.OIDC_USERNAME_CLAIM) or claims["sub"]),
        email=str(claims.get("email") or ""),
        tenant_slug=tenant_slug,
        roles=roles or frozenset({Role.MEMBER}),
        expires_at=float(claims["exp"]) if isinstance(claims.get("exp"), int | float) else None,
    )


def verify_id_token(token: str, *, client_id: str, nonce: str) -> dict[str, Any]:
    """An ID token from the authorization-code flow (OIDC Core 3.1.3.7): signed by a key in
    the issuer's JWKS, `iss` = the issuer, `aud` holds our client id (and `azp`, if several
    audiences, names us), unexpired, and `nonce` = the one this browser's flow sent."""
    if not looks_like_jwt(token):
        raise AuthError("Malformed ID token.", code="invalid_token")
    claims = _decode(
        token, audience=client_id, options={"require": ["exp", "iat", "iss", "sub", "aud"]}
    )
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise AuthError("Token was issued to another party.", code="invalid_audience")
    token_nonce = claims.get("nonce")
    if not isinstance(token_nonce, str) or not hmac.compare_digest(token_nonce, nonce):
        raise AuthError("Token nonce does not match this sign-in.", code="invalid_nonce")
    return claims
