"""What budgets need to know about agents, which sit above this app.

Agents fill these registries in `AgentsConfig.ready()` (injection, not an import: budgets
never imports agents, so there is no hidden cycle). Unfilled, no agent is known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from uuid import UUID

AgentLookup = Callable[[UUID, UUID], "str | None"]
AgentChoices = Callable[[Iterable[UUID]], "list[tuple[UUID, str]]"]

_lookup: list[AgentLookup] = []
_choices: list[AgentChoices] = []


def agent_lookup_register(fn: AgentLookup) -> None:
    _lookup[:] = [fn]


def agent_choices_register(fn: AgentChoices) -> None:
    _choices[:] = [fn]


def agent_lookup(tenant_id: UUID, agent_id: UUID) -> str | None:
    """The slug of the tenant's agent `agent_id`, or None if it has none such."""
    return _lookup[0](tenant_id, agent_id) if _lookup else None


def agent_choices(tenant_ids: Iterable[UUID]) -> list[tuple[UUID, str]]:
    """(id, label) of the agents of these tenants, for the console's budget form."""
    return _choices[0](tenant_ids) if _choices else []
