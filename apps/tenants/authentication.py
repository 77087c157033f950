"""DRF authentication: API keys, OIDC JWTs and console sessions, all resolving to an Identity.

`request.user` is the Django user (for API keys, the key's creator or anonymous);
`request.auth` is always an `Identity` naming the tenant and roles.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, User
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.request import Request

from apps.tenants import oidc, selectors
from apps.tenants.authz import roles_for_scopes
from apps.tenants.exceptions import AuthError, TenantNotFound
from apps.tenants.identity import Identity
from apps.tenants.models import Membership
from apps.tenants.services import api_key_authenticate
from apps.tenants.throttling import auth_failure_record, auth_failures_check

TENANT_HEADER = "X-Warden-Tenant"


class IdentityProviderUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "The identity provider cannot be reached; try again."
    default_code = "identity_provider_unavailable"


def _bearer(request: Request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _fail(exc: AuthError) -> exceptions.AuthenticationFailed:
    return exceptions.AuthenticationFailed(exc.message, code=exc.code)


def identity_for_api_key(raw_key: str) -> tuple[User | AnonymousUser, Identity]:
    key = api_key_authenticate(raw_key=raw_key)
    scopes = frozenset(key.scopes)
    roles = roles_for_scopes(scopes)
    identity = Identity(
        tenant=key.tenant,
        roles=roles,
        via="api_key",
        api_key=key,
        scopes=scopes,
        user_id=key.created_by_id,
    )
    return (key.created_by or AnonymousUser()), identity


def identity_for_user(user: User, tenant_slug: str | None) -> Identity | None:
    """The identity of a logged-in console user, for the tenant asked for or their first."""
    memberships = selectors.memberships_for_user(user=user)
    membership: Membership | None
    if tenant_slug:
        membership = memberships.filter(tenant__slug=tenant_slug).first()
    else:
        membership = memberships.first()
    if membership is None:
        return None
    return Identity(
        tenant=membership.tenant,
        roles=frozenset({membership.role}),
        via="session",
        user_id=user.pk,
    )


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer wdn_…`."""

    def authenticate(self, request: Request) -> tuple[Any, Identity] | None:
        token = _bearer(request)
        if token is None or not token.startswith("wdn_"):
            return None
        auth_failures_check(request)
        try:
            return identity_for_api_key(token)
        except AuthError as exc:
            auth_failure_record(request)
            raise _fail(exc) from exc

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="warden"'


class OidcJwtAuthentication(BaseAuthentication):
    """`Authorization: Bearer <JWT>` from the configured OIDC issuer."""

    # Read by the OpenAPI schema (apps.core.api.schema): 503 when the issuer can't be reached.
    error_statuses = (503,)

    def authenticate(self, request: Request) -> tuple[Any, Identity] | None:
        token = _bearer(request)
        if token is None or token.startswith("wdn_"):
            return None
        auth_failures_check(request)
        if not oidc.oidc_enabled():
            auth_failure_record(request)
            raise exceptions.AuthenticationFailed(
                "Bearer token is not an API key and OIDC is not configured.", code="invalid_token"
            )
        if not oidc.looks_like_jwt(token):
            auth_failure_record(request)
            raise exceptions.AuthenticationFailed("Malformed bearer token.", code="invalid_token")
        try:
            claims = oidc.verify_token(token)
            tenant = selectors.tenant_get_by_slug(slug=claims.tenant_slug)
        except oidc.IdentityProviderUnavailable as exc:
            raise IdentityProviderUnavailable() from exc
        except TenantNotFound as exc:
            auth_failure_record(request)
            raise exceptions.AuthenticationFailed(
                "Token names an unknown tenant.", code="unknown_tenant"
            ) from exc
        except AuthError as exc:
            auth_failure_record(request)
            raise _fail(exc) from exc
        user_model = get_user_model()
        # Users from the IdP are keyed by subject, never by a name the token picks.
        username = f"oidc:{claims.subject}"[:150]
        user, _ = user_model.objects.get_or_create(
            username=username, defaults={"email": claims.email}
        )
        if user.has_usable_password():
            user.set_unusable_password()
            user.save(update_fields=["password"])
        return user, Identity(
            tenant=tenant,
            roles=claims.roles,
            via="jwt",
            user_id=user.pk,
            expires_at=claims.expires_at,
        )

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="warden"'


class TenantSessionAuthentication(SessionAuthentication):
    """Console session cookie (CSRF-checked).

    The tenant comes from `X-Warden-Tenant`, else the first membership.
    """

    def authenticate(self, request: Request) -> tuple[Any, Identity] | None:
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        slug = request.META.get("HTTP_X_WARDEN_TENANT")
        identity = identity_for_user(user, slug)
        if identity is None:
            raise exceptions.PermissionDenied(
                "You are not a member of that tenant." if slug else "You belong to no tenant."
            )
        return user, identity


class UserSessionAuthentication(SessionAuthentication):
    """Console session cookie (CSRF-checked) for the few routes about the person rather
    than a tenant (accepting an invitation): no membership needed, no Identity."""
