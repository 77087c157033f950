from __future__ import annotations

import uuid

from django.db.models import QuerySet

from apps.llm.models import ModelEndpoint
from apps.tenants.models import Tenant


def endpoint_list(*, tenant: Tenant) -> QuerySet[ModelEndpoint]:
    return ModelEndpoint.objects.filter(tenant=tenant).order_by("priority", "name")


def endpoint_get(*, tenant: Tenant, endpoint_id: uuid.UUID) -> ModelEndpoint:
    return endpoint_list(tenant=tenant).get(id=endpoint_id)
