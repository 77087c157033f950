"""The base of every tenant-owned ModelAdmin: a tenant admin who is not a
superuser sees and edits only rows of tenants where they are owner or admin.

Permissions come from memberships, not from Django's per-model permissions, so
granting someone the admin role in one tenant is all it takes — and all it gives.

One class holds the whole rule, so no console page can forget a part of it: the
changelist, the change/delete pages and actions (all through `get_queryset`), the
sidebar filters (their choices come from the scoped rows, never from all tenants), the
select boxes and autocompletes of every foreign key to a tenant-owned model, and the
object-level permissions. A ModelAdmin whose audience differs (the approvals queue: whoever
may decide there) overrides `scoped_tenant_ids` only.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import ForeignKey, ManyToManyField, QuerySet
from django.http import Http404, HttpRequest
from unfold.admin import ModelAdmin

from apps.tenants import selectors
from apps.tenants.models import Membership, Tenant


def administered_tenant_ids(request: HttpRequest) -> set[Any]:
    cache = getattr(request, "_warden_admin_tenants", None)
    if cache is None:
        cache = selectors.tenant_ids_administered_by(user=request.user)
        request._warden_admin_tenants = cache  # type: ignore[attr-defined]
    return cache


def _tenant_owned(model: Any) -> bool:
    return model is Tenant or any(f.name == "tenant" for f in model._meta.get_fields())


def _scope_choices(model: Any, queryset: QuerySet[Any], tenant_ids: set[Any]) -> QuerySet[Any]:
    if model is Tenant:
        return queryset.filter(id__in=tenant_ids)
    return queryset.filter(tenant_id__in=tenant_ids)


class TenantScopedAdmin(ModelAdmin):
    tenant_field = "tenant"

    def scoped_tenant_ids(self, request: HttpRequest) -> set[Any]:
        """The tenants whose rows this user may see here (not asked for a superuser)."""
        return administered_tenant_ids(request)

    def _tenant_id_of(self, obj: Any) -> Any:
        return getattr(obj, f"{self.tenant_field}_id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(**{f"{self.tenant_field}_id__in": self.scoped_tenant_ids(request)})

    def _allowed(self, request: HttpRequest, obj: Any = None) -> bool:
        if not request.user.is_active or not request.user.is_staff:
            return False
        if request.user.is_superuser:
            return True
        tenants = self.scoped_tenant_ids(request)
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

    def _get_obj_does_not_exist_redirect(
        self, request: HttpRequest, opts: Any, object_id: str
    ) -> Any:
        # Django redirects to the index with "<model> with ID … doesn't exist": a 404 says
        # the same of another tenant's row and of no row at all, and shows no id back.
        raise Http404("Not found.")

    def get_list_filter(self, request: HttpRequest) -> Any:
        # Django's related-field filter lists every row of the related table (every tenant,
        # every tenant's agents); the related-only filter lists what the scoped rows point at.
        filters = super().get_list_filter(request)
        if request.user.is_superuser:
            return filters
        scoped = []
        for entry in filters:
            if isinstance(entry, str) and "__" not in entry:
                field = self.model._meta.get_field(entry)
                if isinstance(field, ForeignKey | ManyToManyField):
                    entry = (entry, admin.RelatedOnlyFieldListFilter)
            scoped.append(entry)
        return scoped

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        self._scope_formfield(db_field, request, formfield)
        return formfield

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        formfield = super().formfield_for_manytomany(db_field, request, **kwargs)
        self._scope_formfield(db_field, request, formfield)
        return formfield

    def _scope_formfield(self, db_field: Any, request: HttpRequest, formfield: Any) -> None:
        # A tenant admin picks only among their tenants' rows: the tenant itself, and any
        # other tenant-owned row (an agent, an endpoint, a tool) a field points at.
        if formfield is None or request.user.is_superuser:
            return
        model = db_field.remote_field.model
        if not hasattr(formfield, "queryset"):
            return
        tenant_ids = self.scoped_tenant_ids(request)
        if _tenant_owned(model):
            formfield.queryset = _scope_choices(model, formfield.queryset, tenant_ids)
        elif model is get_user_model():
            # Accounts: only the members of this admin's tenants.
            members = Membership.objects.filter(tenant_id__in=tenant_ids).values("user_id")
            formfield.queryset = formfield.queryset.filter(id__in=members)
