"""Writes: approval requests, their one decision, expiry, and the Slack card's life.

Exactly once: a decision takes the request's row lock, checks it is still pending and not
past its expiry, and commits the new status in the same transaction; every later attempt
(a double click, a retried request, a replayed Slack payload, a second approver racing the
first) finds it decided and gets 409 `already_decided` (or `expired`). Only after commit is
anybody told: apps.agents by the Celery task named APPROVAL_DECIDED_TASK (it requeues the
parked turn), Slack by the card-update task. A lost message changes nothing either: the
agents' recovery sweep finds waiting turns whose request was decided.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from apps.approvals import selectors, slack
from apps.approvals.arguments import arguments_digest, arguments_summary
from apps.approvals.models import (
    ApprovalRequest,
    ApprovalStatus,
    DecidedVia,
    SlackIdentity,
    SlackSettings,
)
from apps.core.exceptions import Conflict, Forbidden, InvalidInput, NotFound
from apps.tenants.authz import Permission, authorize
from apps.tenants.identity import Identity
from apps.tenants.models import Membership, Role, Tenant

logger = logging.getLogger("warden.approvals")

# Registered by apps/agents/tasks.py (a higher layer: named, never imported): requeues the
# turn parked on the request.
APPROVAL_DECIDED_TASK = "agents.approval_decided"
# This app's own tasks (apps/approvals/tasks.py).
SLACK_POST_TASK = "approvals.slack_post"
SLACK_UPDATE_TASK = "approvals.slack_update"
SLACK_TELL_TASK = "approvals.slack_tell"
EXPIRE_TASK = "approvals.expire"

MAX_RATIONALE = 2000
MAX_REASONS = 20
MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class Decider:
    """Who decides, on which channel. `identity` is what the one authorization check sees."""

    identity: Identity
    via: str
    user: User | None = None

    @property
    def label(self) -> str:
        """How the approver is named on the timeline and to the model."""
        if self.identity.via == "api_key" and self.identity.api_key is not None:
            return f"api key {self.identity.api_key.prefix}"
        if self.user is not None:
            return self.user.get_username()
        return "unknown"


def task_send(name: str, *args: Any) -> None:
    """Enqueue a task by name. A broker outage is logged: whatever it was for is durable and
    found again by a sweep (decisions: agents' recovery; cards: nothing depends on them)."""
    try:
        current_app.signature(name, args=list(args)).apply_async(ignore_result=True)
    except Exception:
        logger.exception("could not enqueue task", extra={"task": name})


def user_identity(*, user: User, tenant_id: uuid.UUID, via: str = "session") -> Identity | None:
    """A console or Slack user's identity in a tenant, from their membership now (the
    platform operator counts as owner everywhere), or None when they are not a member."""
    if not user.is_active:
        return None
    tenant = Tenant.objects.filter(id=tenant_id, is_active=True).first()
    if tenant is None:
        return None
    if user.is_superuser:
        roles: frozenset[str] = frozenset({Role.OWNER})
    else:
        membership = Membership.objects.filter(tenant=tenant, user=user).first()
        if membership is None:
            return None
        roles = frozenset({membership.role})
    return Identity(tenant=tenant, roles=roles, via="session", user_id=user.pk)


# --------------------------------------------------------------------------- requests


def _reasons(reasons: list[str]) -> list[str]:
    return [str(r)[:MAX_REASON_CHARS] for r in reasons if str(r).strip()][:MAX_REASONS]


def approval_request_create(
    *,
    tenant_id: uuid.UUID,
    turn_id: uuid.UUID,
    session_id: uuid.UUID,
    call_key: str,
    tool_name: str,
    arguments: Any,
    reasons: list[str],
    step_index: int = 0,
    requested_by_id: int | None = None,
    context: dict[str, Any] | None = None,
) -> ApprovalRequest:
    """The request for this parked call: made once, the same row again when a turn parks on
    the same call twice (a crash between parking and saving, a redelivered task)."""
    approval, created = ApprovalRequest.objects.get_or_create(
        turn_id=turn_id,
        call_key=call_key,
        defaults={
            "tenant_id": tenant_id,
            "session_id": session_id,
            "step_index": step_index,
            "tool_name": tool_name[:64],
            "arguments_digest": arguments_digest(arguments),
            "arguments_summary": arguments_summary(arguments),
            "reasons": _reasons(reasons),
            "requested_by_id": requested_by_id,
            "context": context or {},
            "expires_at": timezone.now() + timedelta(seconds=settings.WARDEN_APPROVAL_TTL_SECONDS),
        },
    )
    if approval.tenant_id != tenant_id:  # a turn id is never reused across tenants
        raise InvalidInput("This call belongs to another tenant.", code="tenant_mismatch")
    if created and slack.enabled() and selectors.slack_settings_for(tenant_id=tenant_id):
        approval_id = str(approval.id)
        transaction.on_commit(lambda: task_send(SLACK_POST_TASK, approval_id))
    return approval


# --------------------------------------------------------------------------- decisions


def _announce(approval: ApprovalRequest) -> None:
    """After commit: the parked turn resumes, and the Slack card shows the outcome."""
    approval_id = str(approval.id)
    transaction.on_commit(lambda: task_send(APPROVAL_DECIDED_TASK, approval_id))
    if approval.slack_ts and slack.enabled():
        transaction.on_commit(lambda: task_send(SLACK_UPDATE_TASK, approval_id))


def _close(
    approval: ApprovalRequest, *, status: str, via: str, rationale: str, approver: str = ""
) -> None:
    approval.status = status
    approval.decided_via = via
    approval.approver = approver
    approval.rationale = rationale
    approval.decided_at = timezone.now()
    approval.save(
        update_fields=[
            "status",
            "decided_via",
            "approver",
            "rationale",
            "decided_at",
            "decided_by",
            "updated_at",
        ]
    )
    _announce(approval)


def _expire(approval: ApprovalRequest) -> None:
    when = approval.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    _close(
        approval,
        status=ApprovalStatus.EXPIRED,
        via=DecidedVia.EXPIRY,
        rationale=f"Nobody decided before the request expired ({when}); the call was not run.",
    )


def approval_decide(
    *, approval_id: uuid.UUID | str, decider: Decider, approved: bool, rationale: str = ""
) -> ApprovalRequest:
    """Approve or reject a pending request, once. Raises NotFound (not this tenant's),
    Forbidden (not an approver, admin or owner; or `self_approval`: approving a call of a
    turn the decider asked for, unless WARDEN_APPROVAL_ALLOW_SELF), InvalidInput (a rejection
    without a rationale), Conflict `already_decided` or `expired`."""
    authorize(decider.identity, Permission.APPROVAL_DECIDE)
    rationale = (rationale or "").strip()
    if not approved and not rationale:
        raise InvalidInput("A rejection needs a rationale.", code="rationale_required")
    if len(rationale) > MAX_RATIONALE:
        raise InvalidInput(
            f"The rationale has {len(rationale)} characters; the limit is {MAX_RATIONALE}.",
            code="rationale_too_long",
        )
    expired = False
    with transaction.atomic():
        approval = (
            ApprovalRequest.objects.select_for_update()
            .filter(tenant=decider.identity.tenant, id=approval_id)
            .first()
        )
        if approval is None:
            raise NotFound("No such approval request.")
        if approval.status == ApprovalStatus.EXPIRED:
            raise Conflict("This approval request has expired.", code="expired")
        if approval.status != ApprovalStatus.PENDING:
            raise Conflict(
                f"This approval request was already {approval.status}"
                f"{f' by {approval.approver}' if approval.approver else ''}.",
                code="already_decided",
                details={"status": approval.status, "approver": approval.approver},
            )
        if (
            approved
            and not settings.WARDEN_APPROVAL_ALLOW_SELF
            and decider.user is not None
            and approval.requested_by_id == decider.user.pk
        ):
            # Four eyes: the person who asked for the turn does not approve its risky call.
            raise Forbidden(
                "You asked for this turn: another approver must approve its call "
                "(you may reject it).",
                code="self_approval",
            )
        if approval.expires_at <= timezone.now():
            # Expire it now (committed), then refuse: the sweep would have done the same.
            _expire(approval)
            expired = True
        else:
            approval.decided_by = decider.user
            _close(
                approval,
                status=ApprovalStatus.APPROVED if approved else ApprovalStatus.REJECTED,
                via=decider.via,
                rationale=rationale,
                approver=decider.label,
            )
    if expired:
        raise Conflict("This approval request has expired.", code="expired")
    logger.info(
        "approval decided",
        extra={
            "approval_id": str(approval.id),
            "status": approval.status,
            "via": decider.via,
            "approver": approval.approver,
        },
    )
    return approval


def approvals_expire(*, limit: int = 500) -> int:
    """Expire pending requests past their time (beat, every minute); each one's turn is then
    resumed with a rejection. Rows another transaction holds are left for the next sweep."""
    now = timezone.now()
    due = list(
        ApprovalRequest.objects.filter(
            status=ApprovalStatus.PENDING, expires_at__lte=now
        ).values_list("id", flat=True)[:limit]
    )
    count = 0
    for approval_id in due:
        with transaction.atomic():
            approval = (
                ApprovalRequest.objects.select_for_update(skip_locked=True)
                .filter(id=approval_id, status=ApprovalStatus.PENDING)
                .first()
            )
            if approval is None:
                continue
            _expire(approval)
            count += 1
    return count


def approvals_withdraw_for_turn(*, turn_id: uuid.UUID, reason: str) -> int:
    """Close the pending requests of a turn that will never resume (it was cancelled)."""
    count = 0
    with transaction.atomic():
        for approval in ApprovalRequest.objects.select_for_update().filter(
            turn_id=turn_id, status=ApprovalStatus.PENDING
        ):
            _close(approval, status=ApprovalStatus.EXPIRED, via=DecidedVia.CANCEL, rationale=reason)
            count += 1
    return count


# --------------------------------------------------------------------------- Slack


def approval_slack_post(*, approval_id: uuid.UUID | str) -> str:
    """Post the request's card to its tenant's channel (the `approvals.slack_post` task).
    Slack errors propagate, so the task retries; approvals never wait for Slack."""
    if not slack.enabled():
        return "disabled"
    approval = ApprovalRequest.objects.filter(id=approval_id).first()
    if approval is None:
        return "missing"
    if approval.slack_ts:
        return "already_posted"
    config = selectors.slack_settings_for(tenant_id=approval.tenant_id)
    if config is None:
        return "no_channel"
    channel, ts = slack.post_card(approval, channel=config.channel_id)
    ApprovalRequest.objects.filter(id=approval.id, slack_ts="").update(
        slack_channel=channel, slack_ts=ts, updated_at=timezone.now()
    )
    # Decided while the card was on its way (its update found no card to update): show it.
    approval.refresh_from_db()
    if not approval.is_pending and approval.slack_ts == ts:
        slack.update_card(approval)
    return "posted"


def approval_slack_update(*, approval_id: uuid.UUID | str) -> str:
    """Show the outcome on the card (the `approvals.slack_update` task)."""
    if not slack.enabled():
        return "disabled"
    approval = ApprovalRequest.objects.filter(id=approval_id).first()
    if approval is None or not approval.slack_ts:
        return "not_posted"
    slack.update_card(approval)
    return "updated"


def slack_decider(
    *, approval: ApprovalRequest, slack_user_id: str, team_id: str
) -> tuple[Decider | None, str]:
    """Who a Slack user is in the request's tenant, or (None, why not). The Slack user must
    be linked to a platform user (SlackIdentity) and, when the tenant names its workspace,
    click from that workspace; whether they may decide is the usual authorization check."""
    config = selectors.slack_settings_for(tenant_id=approval.tenant_id)
    if config is None:
        return None, "This tenant does not take approvals in Slack."
    if config.team_id and team_id != config.team_id:
        return None, "This Slack workspace is not the one this tenant approves from."
    link = selectors.slack_identity_for(tenant_id=approval.tenant_id, slack_user_id=slack_user_id)
    if link is None:
        return None, (
            "Your Slack account is not linked to a Warden user of this tenant; "
            "ask a tenant admin to link it."
        )
    identity = user_identity(user=link.user, tenant_id=approval.tenant_id)
    if identity is None:
        return None, "You are not a member of this tenant."
    decider = Decider(identity=identity, via=DecidedVia.SLACK, user=link.user)
    return decider, ""


def slack_settings_save(
    *, tenant: Tenant, channel_id: str, team_id: str = "", enabled: bool = True
) -> SlackSettings:
    row, _ = SlackSettings.objects.update_or_create(
        tenant=tenant,
        defaults={"channel_id": channel_id.strip(), "team_id": team_id.strip(), "enabled": enabled},
    )
    return row


def slack_identity_link(*, tenant: Tenant, user: User, slack_user_id: str) -> SlackIdentity:
    """Link a Slack user to a member of the tenant (admins do this in the console)."""
    if not Membership.objects.filter(tenant=tenant, user=user).exists():
        raise InvalidInput(f"{user.get_username()} is not a member of this tenant.")
    row, _ = SlackIdentity.objects.update_or_create(
        tenant=tenant, user=user, defaults={"slack_user_id": slack_user_id.strip()}
    )
    return row
