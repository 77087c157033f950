"""Rego policies of a tenant, and their immutable versions."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from apps.policies.defaults import DEFAULT_ENTRY_POINT
from apps.tenants.models import TenantOwned


class PolicyMode(models.TextChoices):
    ENFORCE = "enforce", "Enforce"
    REPORT_ONLY = "report_only", "Report only (record what it would decide)"
    DISABLED = "disabled", "Disabled"


class Policy(TenantOwned):
    """A tenant's Rego policy: consulted before every tool call in its scope.

    Scope: the whole tenant, or only one agent (`agent_slug`) and/or one tool (`tool_name`);
    empty means any. The agent is named by slug, not a foreign key: policies sit below agents
    in the layers (an FK would make this app's migrations depend on agents'), and a slug reads
    the same in every tenant and environment.

    The row holds the current settings (what the gate filters on); the source and the history
    live in `PolicyVersion`s. Every save through the services makes a new version and points
    `current_version` at it, in one transaction.
    """

    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    mode = models.CharField(max_length=16, choices=PolicyMode.choices, default=PolicyMode.ENFORCE)
    entry_point = models.CharField(max_length=200, default=DEFAULT_ENTRY_POINT)
    agent_slug = models.CharField(
        max_length=100, blank=True, help_text="Only this agent's tool calls (slug); empty: all."
    )
    tool_name = models.CharField(
        max_length=64, blank=True, help_text="Only calls of this tool; empty: all tools."
    )
    current_version = models.ForeignKey(
        "PolicyVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "policies"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="uniq_policy_tenant_name")
        ]
        indexes = [models.Index(fields=["tenant", "mode"])]

    def __str__(self) -> str:
        return self.name

    @property
    def source(self) -> str:
        return self.current_version.source if self.current_version else ""


class PolicyVersion(TenantOwned):
    """One saved state of a policy — source and settings — never changed once written.

    `digest` names the compiled form (entry point + source): engines compile a digest once per
    process. Decisions record the version id, number and digest they used.
    """

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    source = models.TextField()
    entry_point = models.CharField(max_length=200)
    mode = models.CharField(max_length=16, choices=PolicyMode.choices)
    agent_slug = models.CharField(max_length=100, blank=True)
    tool_name = models.CharField(max_length=64, blank=True)
    digest = models.CharField(max_length=64)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_label = models.CharField(
        max_length=200, blank=True, help_text="Who saved it: a user, an API key, or the system."
    )

    class Meta:
        ordering = ["policy", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "number"], name="uniq_policy_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.policy_id} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # An integrity guard, not business logic: history that can be rewritten is no history.
        if not self._state.adding:
            raise ValueError("policy versions are immutable; save the policy to make a new one")
        super().save(*args, **kwargs)
