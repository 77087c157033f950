"""Reads for policies. Every one takes the tenant."""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet

from apps.policies.models import Policy, PolicyMode, PolicyVersion
from apps.tenants.models import Tenant


def policy_list(*, tenant: Tenant) -> QuerySet[Policy]:
    return Policy.objects.filter(tenant=tenant).select_related("current_version").order_by("name")


def policy_get(*, tenant: Tenant, policy_id: uuid.UUID) -> Policy:
    return policy_list(tenant=tenant).get(id=policy_id)


def policy_version_list(*, policy: Policy) -> QuerySet[PolicyVersion]:
    return (
        PolicyVersion.objects.filter(tenant_id=policy.tenant_id, policy=policy)
        .select_related("author")
        .order_by("-number")
    )


def policies_for_agent(*, tenant_id: uuid.UUID, agent_slug: str) -> list[Policy]:
    """The policies that may decide the calls of the agent `agent_slug`, whatever the tool
    (`applies_to_tool` picks those of one tool), in the order `policies_applicable` gives."""
    return list(
        Policy.objects.filter(tenant_id=tenant_id, current_version__isnull=False)
        .exclude(mode=PolicyMode.DISABLED)
        .filter(Q(agent_slug="") | Q(agent_slug=agent_slug))
        .select_related("current_version")
        .order_by("name", "id")
    )


def applies_to_tool(policy: Policy, tool_name: str) -> bool:
    return policy.tool_name in ("", tool_name)


def policies_applicable(
    *, tenant_id: uuid.UUID, agent_slug: str, tool_name: str
) -> QuerySet[Policy]:
    """The policies that decide a call of `tool_name` by the agent `agent_slug`: not
    disabled, and scoped to the tenant, that agent and/or that tool. In a stable order, so a
    decision lists its policies the same way every time."""
    return (
        Policy.objects.filter(tenant_id=tenant_id, current_version__isnull=False)
        .exclude(mode=PolicyMode.DISABLED)
        .filter(Q(agent_slug="") | Q(agent_slug=agent_slug))
        .filter(Q(tool_name="") | Q(tool_name=tool_name))
        .select_related("current_version")
        .order_by("name", "id")
    )
