"""The base of every tenant-owned ModelAdmin: a tenant admin who is not a
superuser sees and edits only rows of tenants where they are owner or admin.

Permissions come from memberships, not from Django's per-model permissions, so
granting someone the admin role in one tenant is all it takes — and all it gives.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.tenants import selectors
from apps.tenants.models import Tenant


def administered_tenant_ids(request: HttpRequest) -> set[Any]:
    cache = getattr(request, "_warden_admin_tenants", None)
    if cache is None:
        cache = selectors.tenant_ids_administered_by(user=request.user)
        request._warden_admin_tenants = cache  # type: ignore[attr-defined]
    return cache


class TenantScopedAdmin(admin.ModelAdmin):
    tenant_field = "tenant"

    def _tenant_id_of(self, obj: Any) -> Any:
        return getattr(obj, f"{self.tenant_field}_id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(**{f"{self.tenant_field}_id__in": administered_tenant_ids(request)})

    def _allowed(self, request: HttpRequest, obj: Any = None) -> bool:
        if not request.user.is_active or not request.user.is_staff:
            return False
        if request.user.is_superuser:
            return True
        tenants = administered_tenant_ids(request)
        if obj is None:
            return bool(tenants)
        return self._tenant_id_of(obj) in tenants

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._allowed(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._allowed(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == self.tenant_field and not request.user.is_superuser:
            kwargs["queryset"] = Tenant.objects.filter(id__in=administered_tenant_ids(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
