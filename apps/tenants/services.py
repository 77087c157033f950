"""Writes for tenants, members and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.exceptions import Conflict, InvalidInput
from apps.tenants.exceptions import AuthError, LastOwner
from apps.tenants.models import ApiKey, ApiKeyScope, Membership, Role, Tenant

API_KEY_PREFIX = "wdn"
# Touch last_used_at at most this often: a write per request would make every
# API call a row lock on the key.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def tenant_create(*, name: str, slug: str, owner: User | None = None) -> Tenant:
    with transaction.atomic():
        if Tenant.objects.filter(slug=slug).exists():
            raise Conflict(f"A tenant with slug {slug!r} already exists.", code="slug_taken")
        tenant = Tenant.objects.create(name=name, slug=slug)
        if owner is not None:
            Membership.objects.create(tenant=tenant, user=owner, role=Role.OWNER)
    return tenant


def membership_add(*, tenant: Tenant, user: User, role: str) -> Membership:
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}.", code="unknown_role")
    try:
        with transaction.atomic():
            return Membership.objects.create(tenant=tenant, user=user, role=role)
    except IntegrityError as exc:
        raise Conflict(f"{user} is already a member.", code="already_member") from exc


def _ensure_other_owner(membership: Membership) -> None:
    if membership.role != Role.OWNER:
        return
    others = (
        Membership.objects.select_for_update()
        .filter(tenant_id=membership.tenant_id, role=Role.OWNER)
        .exclude(id=membership.id)
    )
    if not others.exists():
        raise LastOwner("A tenant must keep at least one owner.")


def membership_update_role(*, membership: Membership, role: str) -> Membership:
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}.", code="unknown_role")
    with transaction.atomic():
        if role != Role.OWNER:
            _ensure_other_owner(membership)
        membership.role = role
        membership.save(update_fields=["role", "updated_at"])
    return membership


def membership_remove(*, membership: Membership) -> None:
    with transaction.atomic():
        _ensure_other_owner(membership)
        membership.delete()


def user_get_or_create_by_username(*, username: str, email: str = "") -> User:
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=username, defaults={"email": email})
    return user


# --------------------------------------------------------------------------- API keys


def _hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(
    *,
    tenant: Tenant,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    created_by: User | None = None,
) -> tuple[ApiKey, str]:
    """Create a key. Returns the row and the plaintext key, which is never stored."""
    unknown = sorted(set(scopes) - set(ApiKeyScope.values))
    if unknown:
        raise InvalidInput(f"Unknown scopes: {', '.join(unknown)}.", code="unknown_scope")
    if not scopes:
        raise InvalidInput("An API key needs at least one scope.", code="no_scope")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expires_at must be in the future.", code="expiry_in_past")
    for _ in range(5):
        prefix = secrets.token_hex(4)
        if not ApiKey.objects.filter(prefix=prefix).exists():
            break
    raw = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        prefix=prefix,
        hashed_key=_hash_key(raw),
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
        created_by=created_by,
    )
    return key, raw


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at", "updated_at"])
    return key


def api_key_authenticate(*, raw_key: str) -> ApiKey:
    """Return the active key for `raw_key` or raise AuthError saying why not."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX:
        raise AuthError("Malformed API key.", code="invalid_api_key")
    key = ApiKey.objects.select_related("tenant").filter(prefix=parts[1]).first()
    # Compare even when no row matched, so timing doesn't tell whether a prefix exists.
    expected = key.hashed_key if key else _hash_key("")
    if not hmac.compare_digest(expected, _hash_key(raw_key)) or key is None:
        raise AuthError("Unknown API key.", code="invalid_api_key")
    if key.revoked_at is not None:
        raise AuthError("This API key was revoked.", code="api_key_revoked")
    if key.is_expired:
        raise AuthError("This API key has expired.", code="api_key_expired")
    if not key.tenant.is_active:
        raise AuthError("This API key's tenant is disabled.", code="tenant_disabled")
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(id=key.id).update(last_used_at=now)
        key.last_used_at = now
    return key
