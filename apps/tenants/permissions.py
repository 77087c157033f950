"""DRF permissions over the request's Identity, decided by `apps.tenants.authz`.

The websocket consumers and the SSE view ask the same `allows()` for the same named
permissions, so a key or role refused here is refused on every channel.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from apps.tenants.authz import Permission, allows
from apps.tenants.identity import Identity


def request_identity(request: Request) -> Identity:
    identity = request.auth
    assert isinstance(identity, Identity), "IsTenantMember must guard this view"
    return identity


class IsTenantMember(BasePermission):
    """Any identity of a tenant may read; changes need a participant's role or a write key.

    A view may name the permission each method needs in `required_permissions`
    (e.g. `{"POST": Permission.TURN_START}`); otherwise reads need `tenant.read` and
    changes `tenant.contribute`.
    """

    message = "Authentication with a tenant is required."

    def needed(self, request: Request, view: Any) -> Permission:
        declared: dict[str, Permission] = getattr(view, "required_permissions", {})
        if request.method in declared:
            return declared[request.method]
        if request.method in SAFE_METHODS:
            return Permission.TENANT_READ
        return Permission.TENANT_CONTRIBUTE

    def has_permission(self, request: Request, view: Any) -> bool:
        identity = request.auth
        if not isinstance(identity, Identity):
            return False
        permission = self.needed(request, view)
        if not allows(identity, permission):
            self.message = f"Your role or API key scope does not allow {permission.value!r}."
            return False
        return True


class IsTenantAdmin(IsTenantMember):
    message = "This needs the tenant's owner or admin role."

    def needed(self, request: Request, view: Any) -> Permission:
        return Permission.TENANT_ADMINISTER


class IsTenantAdminForWrites(IsTenantMember):
    """Members may read; only admins may change."""

    message = "Changing this needs the tenant's owner or admin role."

    def needed(self, request: Request, view: Any) -> Permission:
        if request.method in SAFE_METHODS:
            return Permission.TENANT_READ
        return Permission.TENANT_ADMINISTER


class IsTenantOperatorForWrites(IsTenantMember):
    """Members may read; owners, admins and operators (or write-scoped keys) may change."""

    message = "Changing this needs the operator, admin or owner role."

    def needed(self, request: Request, view: Any) -> Permission:
        if request.method in SAFE_METHODS:
            return Permission.TENANT_READ
        return Permission.TENANT_CONFIGURE


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
