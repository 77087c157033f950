"""Reads. Every query that serves a tenant takes it."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from apps.approvals.models import ApprovalRequest, ApprovalStatus, SlackIdentity, SlackSettings
from apps.tenants.models import ADMIN_ROLES, Membership, Role, Tenant

# Roles that may decide approvals (apps.tenants.authz grants `approval.decide` to these).
DECIDER_ROLES = ADMIN_ROLES | {Role.APPROVER}


def approval_list(
    *, tenant: Tenant, status: str | None = None, turn_id: uuid.UUID | None = None
) -> QuerySet[ApprovalRequest]:
    qs = ApprovalRequest.objects.filter(tenant=tenant).select_related("requested_by", "decided_by")
    if status:
        qs = qs.filter(status=status)
    if turn_id:
        qs = qs.filter(turn_id=turn_id)
    return qs.order_by("-created_at")


def approval_get(*, tenant: Tenant, approval_id: uuid.UUID) -> ApprovalRequest:
    return approval_list(tenant=tenant).get(id=approval_id)


def approval_for_call(
    *, tenant_id: uuid.UUID, turn_id: uuid.UUID, call_key: str
) -> ApprovalRequest | None:
    """The request made for one parked call of a turn (the orchestrator's read)."""
    return ApprovalRequest.objects.filter(
        tenant_id=tenant_id, turn_id=turn_id, call_key=call_key
    ).first()


def approvals_decided_for_turns(*, turn_ids: list[uuid.UUID]) -> QuerySet[ApprovalRequest]:
    return ApprovalRequest.objects.filter(turn_id__in=turn_ids).exclude(
        status=ApprovalStatus.PENDING
    )


def tenant_ids_deciding(*, user: User | AnonymousUser) -> set[uuid.UUID]:
    """Tenants where `user` may decide approvals (the console's queue shows only these)."""
    if not isinstance(user, User):
        return set()
    rows = Membership.objects.filter(user=user, role__in=DECIDER_ROLES, tenant__is_active=True)
    return set(rows.values_list("tenant_id", flat=True))


def slack_settings_for(*, tenant_id: uuid.UUID) -> SlackSettings | None:
    return SlackSettings.objects.filter(tenant_id=tenant_id, enabled=True).first()


def slack_identity_for(*, tenant_id: uuid.UUID, slack_user_id: str) -> SlackIdentity | None:
    return (
        SlackIdentity.objects.select_related("user")
        .filter(tenant_id=tenant_id, slack_user_id=slack_user_id, user__is_active=True)
        .first()
    )
