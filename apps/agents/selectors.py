"""Reads for agents, sessions, turns and their graphs. Every one takes the tenant."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.db.models import QuerySet

from apps.agents.models import ActionNode, Agent, AgentSession, SessionEvent, ToolJob, Turn
from apps.tenants.identity import Identity
from apps.tenants.models import Tenant


def agent_list(*, tenant: Tenant) -> QuerySet[Agent]:
    return Agent.objects.filter(tenant=tenant).prefetch_related("allowed_endpoints")


def agent_get(*, tenant: Tenant, agent_id: uuid.UUID) -> Agent:
    return agent_list(tenant=tenant).get(id=agent_id)


def session_list(*, identity: Identity) -> QuerySet[AgentSession]:
    """Operators, admins and API keys see every session of the tenant; others their own."""
    qs = AgentSession.objects.filter(tenant=identity.tenant).select_related("agent")
    if identity.via == "api_key" or identity.is_operator:
        return qs
    if identity.user_id is None:
        return qs.none()
    return qs.filter(user_id=identity.user_id)


def session_get(*, identity: Identity, session_id: uuid.UUID) -> AgentSession:
    return session_list(identity=identity).get(id=session_id)


def turn_list(*, session: AgentSession) -> QuerySet[Turn]:
    return Turn.objects.filter(tenant_id=session.tenant_id, session=session).order_by("seq")


def turn_get(*, identity: Identity, turn_id: uuid.UUID) -> Turn:
    sessions = session_list(identity=identity)
    return (
        Turn.objects.filter(tenant=identity.tenant, session__in=sessions)
        .select_related("session")
        .get(id=turn_id)
    )


def node_list(*, turn: Turn) -> QuerySet[ActionNode]:
    return ActionNode.objects.filter(tenant_id=turn.tenant_id, turn=turn).order_by("position")


def event_list_after(*, session: AgentSession, after_id: int = 0) -> QuerySet[SessionEvent]:
    return SessionEvent.objects.filter(
        tenant_id=session.tenant_id, session=session, id__gt=after_id
    ).order_by("id")


def tool_job_get(*, tenant_id: uuid.UUID, job_id: uuid.UUID) -> ToolJob:
    return ToolJob.objects.select_related("tool__server", "turn").get(
        tenant_id=tenant_id, id=job_id
    )


def agent_slug_for(tenant_id: uuid.UUID, agent_id: uuid.UUID) -> str | None:
    """The slug of the tenant's agent `agent_id`, or None (budgets name agents by id)."""
    return (
        Agent.objects.filter(tenant_id=tenant_id, id=agent_id)
        .values_list("slug", flat=True)
        .first()
    )


def agent_choices_for(tenant_ids: Iterable[uuid.UUID]) -> list[tuple[uuid.UUID, str]]:
    """(id, label) of these tenants' agents, for the console's budget form."""
    rows = Agent.objects.filter(tenant_id__in=list(tenant_ids)).select_related("tenant")
    return [(agent.id, f"{agent.name} ({agent.tenant.slug})") for agent in rows.order_by("name")]
