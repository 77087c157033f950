"""Open streams and the principal behind them.

A stream (websocket, SSE) authenticates once, then lives for hours. So it re-reads
its principal — `identity_current` — on every incoming message, every
`WARDEN_STREAM_REAUTH_SECONDS`, and at once when told that the key, user, membership
or tenant changed (apps/tenants/signals.py sends `principal.changed` to the groups of
`principal_groups`). A principal that no longer authenticates ends the stream.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Literal, TypedDict

from django.contrib.auth import get_user_model
from django.db import transaction

from apps.core.events import publish_now
from apps.tenants.authz import roles_for_scopes
from apps.tenants.identity import Identity
from apps.tenants.models import ApiKey, Membership, Tenant


class PrincipalChanged(TypedDict):
    """Tells the streams of a principal to re-validate it now."""

    type: Literal["principal.changed"]


def key_group(key_id: object) -> str:
    return f"principal.key.{key_id}"


def user_group(user_id: object) -> str:
    return f"principal.user.{user_id}"


def tenant_principals_group(tenant_id: object) -> str:
    return f"principal.tenant.{tenant_id}"


def principal_groups(identity: Identity) -> list[str]:
    groups = [tenant_principals_group(identity.tenant.id)]
    if identity.api_key is not None:
        groups.append(key_group(identity.api_key.pk))
    elif identity.user_id is not None:
        groups.append(user_group(identity.user_id))
    return groups


def principal_changed_publish(group: str) -> None:
    message: PrincipalChanged = {"type": "principal.changed"}
    # Only a nudge (streams re-validate on a timer too): an unreachable channel layer must
    # not fail the save of a user or key, so errors are logged, not raised (robust=True).
    transaction.on_commit(lambda: publish_now(group, dict(message)), robust=True)


def identity_current(identity: Identity) -> Identity | None:
    """`identity` as the database has it now (roles may have changed), or None if it
    no longer authenticates: key revoked, expired or deleted, membership gone, user or
    tenant deactivated, token expired. One query."""
    if identity.expires_at is not None and identity.expires_at <= time.time():
        return None
    if identity.via == "api_key":
        if identity.api_key is None:
            return None
        key = ApiKey.objects.select_related("tenant").filter(pk=identity.api_key.pk).first()
        if key is None or not key.is_active or not key.tenant.is_active:
            return None
        scopes = frozenset(key.scopes)
        return replace(
            identity, tenant=key.tenant, api_key=key, scopes=scopes, roles=roles_for_scopes(scopes)
        )
    if identity.user_id is None:
        return None
    if identity.via == "session":
        membership = (
            Membership.objects.select_related("tenant")
            .filter(
                tenant_id=identity.tenant.id,
                user_id=identity.user_id,
                user__is_active=True,
                tenant__is_active=True,
            )
            .first()
        )
        if membership is None:
            return None
        return replace(identity, tenant=membership.tenant, roles=frozenset({membership.role}))
    # An OIDC identity's roles come from its token; the user and tenant must stay active.
    if not get_user_model().objects.filter(pk=identity.user_id, is_active=True).exists():
        return None
    tenant = Tenant.objects.filter(id=identity.tenant.id, is_active=True).first()
    return replace(identity, tenant=tenant) if tenant is not None else None
