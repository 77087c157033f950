"""Tenants, their members and API keys, and the base class of every tenant-owned row."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.core.redaction import PII_KINDS


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    OPERATOR = "operator", "Operator"
    APPROVER = "approver", "Approver"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


# Roles that may administer the tenant (members, keys, configuration).
ADMIN_ROLES = frozenset({Role.OWNER, Role.ADMIN})
# Roles that may change governed configuration (agents, tools, policies).
OPERATOR_ROLES = ADMIN_ROLES | {Role.OPERATOR}


class Tenant(models.Model):
    """An organisation using Warden. Every governed row belongs to exactly one."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=63, unique=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TenantOwned(models.Model):
    """Base of every tenant-owned model: the tenant is part of the row, never implied.

    Reads go through selectors that take the tenant; there is deliberately no
    default manager magic that could be forgotten or bypassed silently.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Membership(TenantOwned):
    """A user's role in a tenant. A user may belong to several tenants."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="uniq_membership_tenant_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant_id} ({self.role})"


class ApiKeyScope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    ADMIN = "admin", "Admin"


class ApiKey(TenantOwned):
    """A tenant-scoped credential for integrations.

    The secret is shown once at creation; only its SHA-256 is stored. Keys are
    256-bit random, so a fast hash is enough (no dictionary to attack), and it
    keeps per-request verification cheap. `prefix` is public and identifies the
    key in lists and logs.
    """

    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    # Unique, so indexed: authentication looks keys up by this hash alone.
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return not self.is_revoked and not self.is_expired


class Invitation(TenantOwned):
    """An offer to join a tenant with a role: how people become members.

    A tenant admin creates it; whoever holds the token and is signed in accepts it
    once, before it expires, and becomes a member. Nobody can attach an existing
    account by name. Only the token's SHA-256 is stored (the token is 256-bit random
    and shown once, like an API key). `email` is a label for the inviter, not checked
    against the account that accepts.
    """

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    email = models.EmailField(blank=True, help_text="A label: who the invitation is for.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    accepted_at = models.DateTimeField(null=True, blank=True, editable=False)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.role} invitation{f' for {self.email}' if self.email else ''}"

    @property
    def status(self) -> str:
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"


def default_redaction_kinds() -> list[str]:
    return list(PII_KINDS)


class RedactionSettings(TenantOwned):
    """What a tenant scrubs before data leaves the platform (apps/core/redaction.py).

    `kinds` are the built-in PII kinds it keeps on (all by default); credentials (API keys,
    bearer tokens, JWTs, private keys) are scrubbed whatever this says. `custom_patterns` are
    the tenant's own `{"name", "pattern"}` regexes, checked on save against invalid and
    runaway patterns. No row means the platform default: everything on, no custom patterns.
    """

    enabled = models.BooleanField(
        default=True, help_text="Off: only credentials are scrubbed (not PII, not custom patterns)."
    )
    kinds = models.JSONField(default=default_redaction_kinds, blank=True)
    custom_patterns = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = "redaction settings"
        verbose_name_plural = "redaction settings"
        constraints = [models.UniqueConstraint(fields=["tenant"], name="uniq_redaction_tenant")]

    def __str__(self) -> str:
        return f"Redaction settings of {self.tenant_id}"
