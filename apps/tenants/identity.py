"""Who is calling, for which tenant, with which roles — whatever the credential was."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from apps.tenants.models import ADMIN_ROLES, OPERATOR_ROLES, ApiKey, Tenant

Via = Literal["session", "api_key", "jwt"]


@dataclass(frozen=True)
class Identity:
    tenant: Tenant
    roles: frozenset[str]
    via: Via
    user_id: int | None = None
    api_key: ApiKey | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    # When the credential itself stops being valid (an OIDC token's `exp`, epoch seconds):
    # an open stream must end then even though nothing in the database changed.
    expires_at: float | None = None

    @property
    def is_admin(self) -> bool:
        return bool(self.roles & ADMIN_ROLES)

    @property
    def is_operator(self) -> bool:
        return bool(self.roles & OPERATOR_ROLES)

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))
