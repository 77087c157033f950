"""DRF permissions over the request's Identity."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from apps.tenants.identity import Identity
from apps.tenants.models import ApiKeyScope


def request_identity(request: Request) -> Identity:
    identity = request.auth
    assert isinstance(identity, Identity), "IsTenantMember must guard this view"
    return identity


class IsTenantMember(BasePermission):
    """Any authenticated identity of a tenant; API keys need `write` for unsafe methods."""

    message = "Authentication with a tenant is required."

    def has_permission(self, request: Request, view: Any) -> bool:
        identity = request.auth
        if not isinstance(identity, Identity):
            return False
        if identity.via == "api_key" and request.method not in SAFE_METHODS:
            return bool(identity.scopes & {ApiKeyScope.WRITE, ApiKeyScope.ADMIN})
        return True


class IsTenantAdmin(IsTenantMember):
    message = "This needs the tenant's owner or admin role."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        identity = request_identity(request)
        if identity.via == "api_key":
            return ApiKeyScope.ADMIN in identity.scopes
        return identity.is_admin


class IsTenantAdminForWrites(IsTenantMember):
    """Members may read; only admins may change."""

    message = "Changing this needs the tenant's owner or admin role."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        if request.method in SAFE_METHODS:
            return True
        return IsTenantAdmin().has_permission(request, view)


class IsTenantOperatorForWrites(IsTenantMember):
    """Members may read; owners, admins and operators (or write-scoped keys) may change."""

    message = "Changing this needs the operator, admin or owner role."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        if request.method in SAFE_METHODS:
            return True
        identity = request_identity(request)
        if identity.via == "api_key":
            return True  # IsTenantMember already required write/admin scope
        return identity.is_operator


class IsSignedInUser(BasePermission):
    """A person signed in (console session or OIDC JWT); never an API key, even one whose
    creator is a user: a key is the tenant's credential, not its creator's."""

    message = "This needs a signed-in user (console session or OIDC token), not an API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        identity = request.auth
        if isinstance(identity, Identity) and identity.via == "api_key":
            return False
        user = request.user
        return isinstance(user, User) and user.is_active
