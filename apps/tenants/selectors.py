"""Reads. Every tenant-owned query takes the tenant; nothing here can cross tenants."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from apps.core.redaction import DEFAULT_CONFIG, PII_KINDS, CustomPattern, RedactionConfig
from apps.tenants.exceptions import TenantNotFound
from apps.tenants.models import (
    ADMIN_ROLES,
    ApiKey,
    Invitation,
    Membership,
    RedactionSettings,
    Tenant,
)


def tenant_get_by_slug(*, slug: str) -> Tenant:
    try:
        return Tenant.objects.get(slug=slug, is_active=True)
    except Tenant.DoesNotExist as exc:
        raise TenantNotFound(f"No active tenant {slug!r}.") from exc


def memberships_for_user(*, user: User) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(user=user, tenant__is_active=True)
        .select_related("tenant")
        .order_by("created_at")
    )


def membership_for(*, tenant: Tenant, user: User) -> Membership | None:
    return Membership.objects.filter(tenant=tenant, user=user).first()


def tenant_ids_administered_by(*, user: User | AnonymousUser) -> set[uuid.UUID]:
    if not isinstance(user, User):
        return set()
    rows = Membership.objects.filter(user=user, role__in=ADMIN_ROLES)
    return set(rows.values_list("tenant_id", flat=True))


def membership_list(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user").order_by("created_at")


def membership_get(*, tenant: Tenant, membership_id: uuid.UUID) -> Membership:
    return membership_list(tenant=tenant).get(id=membership_id)


def api_key_list(*, tenant: Tenant) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(tenant=tenant).order_by("-created_at")


def api_key_get(*, tenant: Tenant, key_id: uuid.UUID) -> ApiKey:
    return api_key_list(tenant=tenant).get(id=key_id)


def invitation_list(*, tenant: Tenant) -> QuerySet[Invitation]:
    return (
        Invitation.objects.filter(tenant=tenant)
        .select_related("created_by", "accepted_by")
        .order_by("-created_at")
    )


def invitation_get(*, tenant: Tenant, invitation_id: uuid.UUID) -> Invitation:
    return invitation_list(tenant=tenant).get(id=invitation_id)


def api_key_get_by_prefix(*, tenant: Tenant, prefix: str) -> ApiKey:
    return api_key_list(tenant=tenant).get(prefix=prefix)


def redaction_settings_get(*, tenant: Tenant) -> RedactionSettings:
    """The tenant's settings; an unsaved row with the defaults when it has none."""
    found = RedactionSettings.objects.filter(tenant=tenant).first()
    return found or RedactionSettings(tenant=tenant)


def redaction_config_for(tenant_id: str) -> RedactionConfig:
    """The engine's view of a tenant's settings (registered as apps.core.redaction's loader)."""
    row = RedactionSettings.objects.filter(tenant_id=tenant_id).first()
    if row is None:
        return DEFAULT_CONFIG
    return redaction_config(row)


def redaction_config(row: RedactionSettings) -> RedactionConfig:
    return RedactionConfig(
        enabled=row.enabled,
        kinds=frozenset(k for k in row.kinds if k in PII_KINDS),
        custom=tuple(CustomPattern(p["name"], p["pattern"]) for p in row.custom_patterns),
    )
