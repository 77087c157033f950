"""Budget CRUD (REST and the console's save_model call the same functions). WP-C fills these."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from apps.budgets.models import Budget
from apps.tenants.models import Tenant


def budget_save(*, tenant: Tenant, **fields: Any) -> Budget:
    raise NotImplementedError


def budget_update(*, budget: Budget, **fields: Any) -> Budget:
    raise NotImplementedError


def budget_delete(*, budget: Budget) -> None:
    raise NotImplementedError


def budgets_delete_for_agent(*, tenant_id: UUID, agent_id: UUID) -> int:
    raise NotImplementedError
