"""One authorization model for every channel: REST views, websocket messages and SSE.

Each action is a named `Permission`; `allows(identity, permission)` is the only place
that decides it, from the identity's roles. API keys get their roles from their
scopes when they authenticate (read → viewer, write → operator, admin → admin), so a
key and a console user with the same role are allowed exactly the same things, on
every channel.
"""

from __future__ import annotations

from enum import StrEnum

from apps.core.exceptions import Forbidden
from apps.tenants.identity import Identity
from apps.tenants.models import ApiKeyScope, Role


class Permission(StrEnum):
    TENANT_READ = "tenant.read"  # read the tenant's resources and its event stream
    TENANT_CONTRIBUTE = "tenant.contribute"  # any change a participant (not a viewer) may make
    SESSION_READ = "session.read"  # a session, its turns and its event stream
    SESSION_MANAGE = "session.manage"  # open or close a session, set its state
    TURN_START = "turn.start"
    TURN_CANCEL = "turn.cancel"
    REASONING_READ = "reasoning.read"  # the model's private thought (scratchpad, raw tokens)
    TENANT_CONFIGURE = "tenant.configure"  # agents, tools, policies
    TENANT_ADMINISTER = "tenant.administer"  # members, keys
    APPROVAL_DECIDE = "approval.decide"  # approve or reject a tool call parked for a human
    POLICY_READ = "policy.read"  # read policies and their versions, evaluate one on an input
    POLICY_WRITE = "policy.write"  # create, change or delete a policy (a new version each save)
    BUDGET_READ = "budget.read"  # budgets, what they have spent, and the tenant's usage
    BUDGET_WRITE = "budget.write"  # create, change or delete a budget
    SESSION_REPLAY = "session.replay"  # re-run a recorded session from its log (no live calls)
    AUDIT_READ = "audit.read"  # export a session's hash-chained event log, unredacted
    MEMORY_READ = "memory.read"  # search long-term memory, list its documents
    MEMORY_WRITE = "memory.write"  # ingest or delete documents in long-term memory


_VIEWER = frozenset({Permission.TENANT_READ, Permission.SESSION_READ, Permission.MEMORY_READ})
_PARTICIPANT = _VIEWER | {
    Permission.TENANT_CONTRIBUTE,
    Permission.SESSION_MANAGE,
    Permission.TURN_START,
    Permission.TURN_CANCEL,
}
# Approvers decide parked tool calls and nothing more; operators configure agents and tools
# but do not decide (whoever writes the policy should not also wave its calls through).
_APPROVER = _PARTICIPANT | {Permission.APPROVAL_DECIDE}
# What is in memory reaches every agent of the tenant (retrieved into its prompts): writing
# it is configuring them, an operator's call.
# Replay shows what the model and the tools said (divergences quote them) and costs policy
# evaluations: for those who may read reasoning and configure agents.
_OPERATOR = _PARTICIPANT | {
    Permission.MEMORY_WRITE,
    Permission.REASONING_READ,
    Permission.SESSION_REPLAY,
    Permission.TENANT_CONFIGURE,
    Permission.POLICY_READ,
    Permission.BUDGET_READ,
}
# Policies and budgets decide what every agent of the tenant may do: changing them is an
# admin's call. The audit export is every stored event as it was sealed (private reasoning
# included), for archiving: an admin's too.
_ADMIN = _OPERATOR | {
    Permission.TENANT_ADMINISTER,
    Permission.AUDIT_READ,
    Permission.POLICY_WRITE,
    Permission.BUDGET_WRITE,
    Permission.APPROVAL_DECIDE,
}

GRANTS: dict[str, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.MEMBER: _PARTICIPANT,
    Role.APPROVER: _APPROVER,
    Role.OPERATOR: _OPERATOR,
    Role.ADMIN: _ADMIN,
    Role.OWNER: _ADMIN,
}


# An API key acts with the role its scopes stand for (so only an `admin` key decides approvals).
SCOPE_ROLES: dict[str, str] = {
    ApiKeyScope.ADMIN: Role.ADMIN,
    ApiKeyScope.WRITE: Role.OPERATOR,
    ApiKeyScope.READ: Role.VIEWER,
}


def roles_for_scopes(scopes: frozenset[str]) -> frozenset[str]:
    return frozenset(SCOPE_ROLES[scope] for scope in scopes if scope in SCOPE_ROLES)


def granted(identity: Identity) -> frozenset[Permission]:
    """Everything `identity` may do (the union over its roles; unknown roles grant nothing)."""
    result: frozenset[Permission] = frozenset()
    for role in identity.roles:
        result |= GRANTS.get(role, frozenset())
    return result


def allows(identity: Identity, permission: Permission) -> bool:
    return permission in granted(identity)


def authorize(identity: Identity, permission: Permission) -> None:
    """Raise `Forbidden` (code `permission_denied`, REST's 403 code) unless allowed."""
    if not allows(identity, permission):
        raise Forbidden(
            f"Your role or API key scope does not allow {permission.value!r}.",
            details={"permission": permission.value},
        )
