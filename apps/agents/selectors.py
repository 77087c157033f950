"""Reads for agents, sessions, turns and their graphs. Every one takes the tenant."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from django.db.models import Q, QuerySet

from apps.agents.models import ActionNode, Agent, AgentSession, SessionEvent, ToolJob, Turn
from apps.core.exceptions import InvalidInput
from apps.core.joined_read import JoinedRead
from apps.policies.whatif import DecisionQuery, RecordedDecision
from apps.tenants.identity import Identity
from apps.tenants.models import Tenant


def agent_list(*, tenant: Tenant) -> QuerySet[Agent]:
    return Agent.objects.filter(tenant=tenant).prefetch_related("allowed_endpoints")


def agent_get(*, tenant: Tenant, agent_id: uuid.UUID) -> Agent:
    return agent_list(tenant=tenant).get(id=agent_id)


def _sees_every_session(identity: Identity) -> bool:
    return identity.via == "api_key" or identity.is_operator


def session_list(*, identity: Identity) -> QuerySet[AgentSession]:
    """Operators, admins and API keys see every session of the tenant; others their own."""
    qs = AgentSession.objects.filter(tenant=identity.tenant).select_related("agent")
    if _sees_every_session(identity):
        return qs
    if identity.user_id is None:
        return qs.none()
    return qs.filter(user_id=identity.user_id)


def session_get(*, identity: Identity, session_id: uuid.UUID) -> AgentSession:
    """One session of `session_list`, with its agent (AgentSession.DoesNotExist if it is not
    one of them). Every session request and stream starts here: the SQL is written once."""
    try:
        session_id = uuid.UUID(str(session_id))
    except ValueError:
        raise AgentSession.DoesNotExist("No such session.") from None
    own = not _sees_every_session(identity)
    if own and identity.user_id is None:
        raise AgentSession.DoesNotExist("No such session.")
    found = _session_read().one(
        {"tenant": identity.tenant.pk, "id": session_id, "user": identity.user_id},
        where=" AND s.user_id = %(user)s" if own else "",
    )
    if found is None:
        raise AgentSession.DoesNotExist("No such session.")
    (session, agent), _ = found
    assert isinstance(session, AgentSession) and isinstance(agent, Agent)
    session.agent = agent
    return session


@functools.cache
def _session_read() -> JoinedRead:
    return JoinedRead(
        [(AgentSession, "s"), (Agent, "a")],
        f"""
        FROM {AgentSession._meta.db_table} s JOIN {Agent._meta.db_table} a ON a.id = s.agent_id
        WHERE s.tenant_id = %(tenant)s AND s.id = %(id)s
        """,
    )


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


# --------------------------------------------------------------------------- recorded decisions


def _cursor(node: ActionNode) -> str:
    return f"{node.created_at.isoformat()}|{node.id}"


def _after(cursor: str) -> Q:
    """The decisions after `cursor` (as `_cursor` wrote it); a cursor that is not one is a 400."""
    stamp, _, node_id = cursor.partition("|")
    try:
        moment = datetime.fromisoformat(stamp)
        after_id = uuid.UUID(node_id)
    except ValueError:
        raise InvalidInput("That is not a cursor this API gave.", code="invalid_cursor") from None
    return Q(created_at__gt=moment) | Q(created_at=moment, id__gt=after_id)


def recorded_policy_decisions(query: DecisionQuery) -> list[RecordedDecision]:
    """The tenant's recorded gate decisions (`policy` nodes) in the query's window, oldest
    first, each with its call's real arguments put back from the call's own node."""
    nodes = ActionNode.objects.filter(tenant_id=query.tenant_id, kind="policy")
    if query.session_ids is not None:
        nodes = nodes.filter(turn__session_id__in=list(query.session_ids))
    if query.since is not None:
        nodes = nodes.filter(created_at__gte=query.since)
    if query.after:
        nodes = nodes.filter(_after(query.after))
    page = list(
        nodes.select_related("turn__session__agent").order_by("created_at", "id")[: query.limit]
    )
    wanted = {(n.turn_id, n.node_id.removesuffix(":policy")) for n in page}
    calls = {
        (c.turn_id, c.node_id): c.inputs
        for c in ActionNode.objects.filter(
            tenant_id=query.tenant_id,
            kind="tool_call",
            turn_id__in={turn_id for turn_id, _ in wanted},
            node_id__in={node_id for _, node_id in wanted},
        ).only("turn_id", "node_id", "inputs")
    }
    decisions = []
    for node in page:
        call_node = node.node_id.removesuffix(":policy")
        recorded = node.inputs.get("input") if isinstance(node.inputs, dict) else None
        recorded = recorded if isinstance(recorded, dict) else {}
        outputs = node.outputs if isinstance(node.outputs, dict) else {}
        call = calls.get((node.turn_id, call_node)) or {}
        input_doc = {k: v for k, v in recorded.items() if k != "arguments_digest"}
        restored = isinstance(call.get("arguments"), dict)
        if input_doc and restored:
            input_doc["arguments"] = call["arguments"]
        decisions.append(
            RecordedDecision(
                session_id=str(node.turn.session_id),
                turn_id=str(node.turn_id),
                turn_seq=node.turn.seq,
                node_id=call_node,
                step_index=node.step_index,
                call_index=node.call_index,
                agent_slug=node.turn.session.agent.slug,
                tool=str(node.inputs.get("tool", "")),
                input_doc=input_doc,
                arguments_summary=recorded.get("arguments"),
                arguments_restored=restored,
                outcome=str(outputs.get("outcome", "")),
                reasons=[str(r) for r in outputs.get("reasons", [])],
                policies=[p for p in outputs.get("policies", []) if isinstance(p, dict)],
                recorded_at=node.created_at,
                cursor=_cursor(node),
            )
        )
    return decisions


def session_ids_in_tenant(tenant_id: uuid.UUID, session_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    return set(
        AgentSession.objects.filter(tenant_id=tenant_id, id__in=list(session_ids)).values_list(
            "id", flat=True
        )
    )
