"""Writes for tenants, members and API keys."""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core import redaction
from apps.core.exceptions import Conflict, InvalidInput
from apps.core.joined_read import JoinedRead
from apps.tenants.exceptions import (
    AuthError,
    InvitationNotFound,
    InvitationUnusable,
    LastOwner,
    OwnerRequired,
)
from apps.tenants.models import (
    ApiKey,
    ApiKeyScope,
    Invitation,
    Membership,
    RedactionSettings,
    Role,
    Tenant,
)

API_KEY_PREFIX = "wdn"
INVITATION_TOKEN_PREFIX = "wdi"  # noqa: S105 (a label, not a secret)
INVITATION_MAX_LIFETIME = timedelta(days=30)
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
    """Make `user` a member. Only for invitation_accept, the platform operator (superuser
    console) and seeding: a tenant admin never attaches an existing account directly."""
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}.", code="unknown_role")
    try:
        with transaction.atomic():
            return Membership.objects.create(tenant=tenant, user=user, role=role)
    except IntegrityError as exc:
        raise Conflict(f"{user} is already a member.", code="already_member") from exc


def role_grant_check(*, role: str, actor_roles: Iterable[str], current_role: str = "") -> None:
    """Raise OwnerRequired unless the actor may give `role` to someone who has `current_role`.

    Only owners make owners, and only owners change or remove an owner: an admin (or an
    admin-scoped API key, which acts as an admin) could otherwise promote itself, or
    demote the owners one by one.
    """
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}.", code="unknown_role")
    if Role.OWNER in (role, current_role) and Role.OWNER not in set(actor_roles):
        raise OwnerRequired("Only an owner can grant, change or remove the owner role.")


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


def membership_update_role(
    *, membership: Membership, role: str, actor_roles: Iterable[str]
) -> Membership:
    role_grant_check(role=role, actor_roles=actor_roles, current_role=membership.role)
    with transaction.atomic():
        if role != Role.OWNER:
            _ensure_other_owner(membership)
        membership.role = role
        membership.save(update_fields=["role", "updated_at"])
    return membership


def membership_remove(*, membership: Membership, actor_roles: Iterable[str]) -> None:
    if membership.role == Role.OWNER and Role.OWNER not in set(actor_roles):
        raise OwnerRequired("Only an owner can remove an owner.")
    with transaction.atomic():
        _ensure_other_owner(membership)
        membership.delete()


# --------------------------------------------------------------------------- invitations


def _hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def invitation_create(
    *,
    tenant: Tenant,
    role: str,
    actor_roles: Iterable[str],
    email: str = "",
    expires_at: datetime | None = None,
    created_by: User | None = None,
) -> tuple[Invitation, str]:
    """Create an invitation. Returns the row and the token, which is never stored."""
    role_grant_check(role=role, actor_roles=actor_roles)
    now = timezone.now()
    if expires_at is None:
        expires_at = now + timedelta(hours=settings.WARDEN_INVITATION_TTL_HOURS)
    if expires_at <= now:
        raise InvalidInput("expires_at must be in the future.", code="expiry_in_past")
    if expires_at > now + INVITATION_MAX_LIFETIME:
        raise InvalidInput(
            f"An invitation lives at most {INVITATION_MAX_LIFETIME.days} days.",
            code="expiry_too_far",
        )
    raw = f"{INVITATION_TOKEN_PREFIX}_{secrets.token_urlsafe(32)}"
    invitation = Invitation.objects.create(
        tenant=tenant,
        role=role,
        email=email,
        token_hash=_hash_token(raw),
        expires_at=expires_at,
        created_by=created_by,
    )
    return invitation, raw


def invitation_revoke(*, invitation: Invitation) -> Invitation:
    """Withdraw a pending invitation. An accepted one stays as the record of who joined."""
    if invitation.accepted_at is not None:
        raise InvitationUnusable(
            "This invitation was already accepted; remove the member instead.",
            code="invitation_used",
        )
    if invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at", "updated_at"])
    return invitation


def invitation_accept(*, token: str, user: User) -> Membership:
    """`user` (signed in, never an API key) joins the invitation's tenant with its role.

    Single use: the row is locked while it is checked and marked, so two concurrent
    accepts of one token make one member.
    """
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update()
            .select_related("tenant")
            .filter(token_hash=_hash_token(token))
            .first()
        )
        if invitation is None or not invitation.tenant.is_active:
            raise InvitationNotFound("No such invitation.")
        if invitation.accepted_at is not None:
            raise InvitationUnusable("This invitation was already used.", code="invitation_used")
        if invitation.revoked_at is not None:
            raise InvitationUnusable("This invitation was revoked.", code="invitation_revoked")
        if invitation.expires_at <= timezone.now():
            raise InvitationUnusable("This invitation has expired.", code="invitation_expired")
        # Already a member: refused (409 already_member) and the invitation stays usable.
        membership = membership_add(tenant=invitation.tenant, user=user, role=invitation.role)
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by", "updated_at"])
    return membership


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


@functools.cache
def _api_key_joined() -> JoinedRead:
    """Every API request reads its key: SQL written once (compiling the select_related
    QuerySet cost more CPU than running it), with the tenant and the key's creator."""
    user = get_user_model()
    return JoinedRead(
        [(ApiKey, "k"), (Tenant, "n"), (user, "u")],
        f"""
        FROM {ApiKey._meta.db_table} k
        JOIN {Tenant._meta.db_table} n ON n.id = k.tenant_id
        LEFT JOIN {user._meta.db_table} u ON u.id = k.created_by_id
        WHERE k.hashed_key = %s
        """,
    )


def _api_key_read(hashed_key: str) -> ApiKey | None:
    found = _api_key_joined().one([hashed_key])
    if found is None:
        return None
    (key, tenant, user), _ = found
    assert isinstance(key, ApiKey) and isinstance(tenant, Tenant)
    key.tenant, key.created_by = tenant, user  # type: ignore[assignment]
    return key


def api_key_authenticate(*, raw_key: str) -> ApiKey:
    """Return the active key for `raw_key` or raise AuthError saying why not."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX:
        raise AuthError("Malformed API key.", code="invalid_api_key")
    # One indexed lookup by the hash of the whole key: an unknown prefix and a wrong
    # secret for a known prefix run the same query and take the same path, so the
    # response time can't tell whether a prefix exists. (The hash covers the prefix,
    # so a match is that key and no other.)
    key = _api_key_read(_hash_key(raw_key))
    if key is None:
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


def redaction_settings_update(
    *,
    tenant: Tenant,
    enabled: bool | None = None,
    kinds: Iterable[str] | None = None,
    custom_patterns: Iterable[dict[str, str]] | None = None,
) -> RedactionSettings:
    """Change what the tenant scrubs. Refuses (`InvalidInput`, with the engine's code) unknown
    kinds and custom patterns that are invalid, match everything or backtrack catastrophically.
    The tenant's cached redactor in this process is dropped on commit; other processes pick the
    change up within apps.core.redaction.CONFIG_TTL_SECONDS."""
    patterns = None
    if custom_patterns is not None:
        patterns = [{"name": p["name"], "pattern": p["pattern"]} for p in custom_patterns]
        try:
            redaction.validate_custom_patterns(
                redaction.CustomPattern(p["name"], p["pattern"]) for p in patterns
            )
        except redaction.InvalidPattern as exc:
            raise InvalidInput(str(exc), code=exc.code) from None
    if kinds is not None:
        kinds = sorted(set(kinds))
        unknown = [k for k in kinds if k not in redaction.PII_KINDS]
        if unknown:
            raise InvalidInput(
                f"Unknown or not optional kinds: {', '.join(unknown)}. PII kinds are "
                f"{', '.join(redaction.PII_KINDS)}; credentials are always scrubbed.",
                code="unknown_redaction_kind",
                details={"kinds": unknown},
            )
    with transaction.atomic():
        row, _ = RedactionSettings.objects.select_for_update().get_or_create(tenant=tenant)
        if enabled is not None:
            row.enabled = enabled
        if kinds is not None:
            row.kinds = kinds
        if patterns is not None:
            row.custom_patterns = patterns
        row.save()
        transaction.on_commit(lambda: redaction.invalidate(tenant.id))
    return row
