"""Approval requests for tool calls a policy parked, and how a tenant reaches Slack.

This app sits below apps.agents: it knows turns, sessions and action-graph nodes only by
their ids (plain columns, not foreign keys), so none of its migrations depends on agents'.
It tells agents about a decision by a Celery task named in `services.APPROVAL_DECIDED_TASK`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.tenants.models import TenantOwned


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"


class DecidedVia(models.TextChoices):
    API = "api", "API"
    CONSOLE = "console", "Console"
    SLACK = "slack", "Slack"
    EXPIRY = "expiry", "Expiry"
    CANCEL = "cancel", "Turn cancelled"


class ApprovalRequest(TenantOwned):
    """One tool call, parked by a policy until a human approves or rejects it.

    pending → approved | rejected | expired, once: the decision is taken under a row lock
    and never changes afterwards. `call_key` is the loop's deterministic node id of the call
    (its idempotency key); one request per (turn, call). The arguments themselves stay on the
    action-graph node: here only their SHA-256 (of canonical JSON — the resumed turn checks
    the call it runs against it) and a redacted summary for the approver.
    """

    turn_id = models.UUIDField()
    session_id = models.UUIDField()
    call_key = models.CharField(max_length=200)
    step_index = models.PositiveIntegerField(default=0)
    tool_name = models.CharField(max_length=64)
    arguments_digest = models.CharField(max_length=64)
    arguments_summary = models.JSONField(default=dict, blank=True)
    reasons = models.JSONField(default=list, blank=True)
    # What the approver is shown besides the call: agent, user, environment, tokens, cost and
    # time spent so far — as they were when the call was parked.
    context = models.JSONField(default=dict, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(
        max_length=16, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_via = models.CharField(max_length=16, choices=DecidedVia.choices, blank=True)
    # Who decided, as the timeline and the model are told ("alice", "api key wdn_ab12…").
    approver = models.CharField(max_length=200, blank=True)
    rationale = models.TextField(blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    # The Slack card, once posted (chat.update needs both).
    slack_channel = models.CharField(max_length=64, blank=True)
    slack_ts = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["turn_id", "call_key"], name="uniq_approval_turn_call")
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "created_at"]),
            models.Index(fields=["status", "expires_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == ApprovalStatus.PENDING


class SlackSettings(TenantOwned):
    """Where a tenant's approval cards go in Slack (one row per tenant; admins set it).

    `team_id`, when set, is the only Slack workspace whose clicks count for this tenant.
    """

    channel_id = models.CharField(max_length=64, help_text="Slack channel id, e.g. C0123456789.")
    team_id = models.CharField(
        max_length=64, blank=True, help_text="Slack workspace (team) id, e.g. T0123456789."
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        verbose_name = "Slack settings"
        verbose_name_plural = "Slack settings"
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="uniq_slack_settings_tenant")
        ]

    def __str__(self) -> str:
        return f"Slack {self.channel_id}"


class SlackIdentity(TenantOwned):
    """Which platform user a Slack user is, in this tenant (admins link them).

    The link says who clicked; whether they may decide comes from their membership's role at
    the moment they click, so a removed or demoted member's clicks are refused.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="slack_identities"
    )
    slack_user_id = models.CharField(max_length=64, help_text="Slack user id, e.g. U0123456789.")

    class Meta:
        verbose_name = "Slack identity"
        verbose_name_plural = "Slack identities"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "slack_user_id"], name="uniq_slack_identity_slack_user"
            ),
            models.UniqueConstraint(fields=["tenant", "user"], name="uniq_slack_identity_user"),
        ]

    def __str__(self) -> str:
        return f"{self.slack_user_id} → {self.user}"
