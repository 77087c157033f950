"""Console: tenants, members and API keys. Admin writes go through the same services as the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from apps.core import redaction
from apps.core.api.views import authenticated_user
from apps.core.exceptions import WardenError
from apps.tenants import services
from apps.tenants.admin_scoping import TenantScopedAdmin, administered_tenant_ids
from apps.tenants.models import (
    ApiKey,
    ApiKeyScope,
    Invitation,
    Membership,
    RedactionSettings,
    Role,
    Tenant,
)


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    list_display = ["name", "slug", "is_active", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ("name",)}

    def _tenant_id_of(self, obj: Any) -> Any:
        return obj.id

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        qs: QuerySet[Tenant] = admin.ModelAdmin.get_queryset(self, request)
        if request.user.is_superuser:
            return qs
        return qs.filter(id__in=administered_tenant_ids(request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if request.user.is_superuser else ["slug", "is_active"]


def actor_roles(request: HttpRequest, tenant_id: Any) -> frozenset[str]:
    """The console user's roles in a tenant; the platform operator (superuser) counts as owner."""
    user = authenticated_user(request)
    if user is None:
        return frozenset()
    if user.is_superuser:
        return frozenset({Role.OWNER})
    membership = Membership.objects.filter(tenant_id=tenant_id, user=user).first()
    return frozenset({membership.role}) if membership else frozenset()


def _form_with_request(base: type[forms.ModelForm], request: HttpRequest) -> type[forms.ModelForm]:
    return type(base.__name__, (base,), {"request": request})


class MembershipChangeForm(forms.ModelForm):
    """Role changes only; the grant rule (only owners make or unmake owners) is checked
    here too, so the console answers with a form error instead of a half-saved row."""

    request: HttpRequest

    class Meta:
        model = Membership
        fields = ["role"]

    def clean_role(self) -> str:
        role = str(self.cleaned_data["role"])
        try:
            services.role_grant_check(
                role=role,
                actor_roles=actor_roles(self.request, self.instance.tenant_id),
                current_role=Membership.objects.get(pk=self.instance.pk).role,
            )
        except WardenError as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from exc
        return role


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    """Tenant admins change roles and remove members; people join by invitation. Only
    the platform operator (superuser) may attach an existing account directly."""

    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role", "tenant"]
    raw_id_fields = ["user"]

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        # Searching by e-mail would let a tenant admin test guesses of members' addresses.
        if request.user.is_superuser:
            return ["user__username", "user__email"]
        return ["user__username"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is not None:
            kwargs["form"] = _form_with_request(MembershipChangeForm, request)
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["tenant", "user", "role"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else ["tenant", "user"]

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        if change:
            services.membership_update_role(
                membership=Membership.objects.get(pk=obj.pk),
                role=obj.role,
                actor_roles=actor_roles(request, obj.tenant_id),
            )
        else:
            created = services.membership_add(tenant=obj.tenant, user=obj.user, role=obj.role)
            obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        try:
            services.membership_remove(
                membership=obj, actor_roles=actor_roles(request, obj.tenant_id)
            )
        except WardenError as exc:
            messages.error(request, exc.message)


class InvitationAddForm(forms.ModelForm):
    request: HttpRequest

    class Meta:
        model = Invitation
        fields = ["tenant", "role", "email", "expires_at"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        tenant, role = data.get("tenant"), data.get("role")
        if tenant is not None and role:
            try:
                roles = actor_roles(self.request, tenant.id)
                services.role_grant_check(role=role, actor_roles=roles)
            except WardenError as exc:
                raise forms.ValidationError(exc.message, code=exc.code) from exc
        return data


@admin.register(Invitation)
class InvitationAdmin(TenantScopedAdmin):
    """Invite people; the token is shown once, like an API key's secret."""

    list_display = ["__str__", "tenant", "role", "email", "expires_at", "accepted_by", "revoked_at"]
    list_filter = ["tenant", "role"]
    search_fields = ["email"]
    actions = ["revoke_invitations"]
    readonly_fields = [
        "tenant",
        "role",
        "email",
        "expires_at",
        "created_by",
        "accepted_at",
        "accepted_by",
        "revoked_at",
    ]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = _form_with_request(InvitationAddForm, request)
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else self.readonly_fields

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["tenant", "role", "email", "expires_at"] if obj is None else self.readonly_fields

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        hours = settings.WARDEN_INVITATION_TTL_HOURS
        return {"expires_at": timezone.now() + timedelta(hours=hours), "role": Role.MEMBER}

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False if obj is not None else super().has_change_permission(request, obj)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj)

    def save_model(self, request: HttpRequest, obj: Invitation, form: Any, change: bool) -> None:
        invitation, token = services.invitation_create(
            tenant=obj.tenant,
            role=obj.role,
            actor_roles=actor_roles(request, obj.tenant_id),
            email=obj.email,
            expires_at=obj.expires_at,
            created_by=authenticated_user(request),
        )
        obj.pk = invitation.pk
        messages.warning(
            request,
            f"Invitation created. Give this token to the person; it is not shown again: {token}",
        )

    @admin.action(description="Revoke selected invitations")
    def revoke_invitations(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        revoked = 0
        for invitation in queryset:
            try:
                services.invitation_revoke(invitation=invitation)
                revoked += 1
            except WardenError as exc:
                messages.error(request, f"{invitation}: {exc.message}")
        messages.success(request, f"Revoked {revoked} invitation(s).")


class ApiKeyAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiKeyScope.choices, widget=forms.CheckboxSelectMultiple, initial=["read"]
    )

    class Meta:
        model = ApiKey
        fields = ["tenant", "name", "scopes", "expires_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    list_display = [
        "name",
        "prefix",
        "tenant",
        "scopes",
        "expires_at",
        "revoked_at",
        "last_used_at",
    ]
    list_filter = ["tenant"]
    search_fields = ["name", "prefix"]
    actions = ["revoke_keys"]
    readonly_fields = ["prefix", "scopes", "revoked_at", "last_used_at", "created_by", "created_at"]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        return [*self.readonly_fields, "tenant", "expires_at"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["tenant", "name", "scopes", "expires_at"]
        return ["tenant", "name", *self.readonly_fields, "expires_at"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name", "updated_at"])
            return
        key, raw = services.api_key_create(
            tenant=obj.tenant,
            name=obj.name,
            scopes=form.cleaned_data["scopes"],
            expires_at=obj.expires_at,
            created_by=authenticated_user(request),
        )
        obj.pk = key.pk
        messages.warning(request, f"API key created. Copy it now, it is not shown again: {raw}")

    @admin.action(description="Revoke selected API keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            services.api_key_revoke(key=key)
        messages.success(request, f"Revoked {queryset.count()} key(s).")


class RedactionSettingsForm(forms.ModelForm):
    kinds = forms.MultipleChoiceField(
        choices=[(k, k) for k in redaction.PII_KINDS],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="PII kinds scrubbed. Credentials (API keys, bearer tokens, JWTs, private "
        "keys) are always scrubbed.",
    )
    custom_patterns = forms.JSONField(
        required=False,
        initial=list,
        help_text='A list of {"name": "employee_id", "pattern": "EMP-\\\\d{6}"}: shown as '
        "[REDACTED:employee_id]. No capturing groups; runaway patterns are refused.",
    )

    class Meta:
        model = RedactionSettings
        fields = ["tenant", "enabled", "kinds", "custom_patterns"]

    def clean_custom_patterns(self) -> list[dict[str, str]]:
        value = self.cleaned_data.get("custom_patterns") or []
        if not isinstance(value, list) or not all(
            isinstance(p, dict)
            and set(p) == {"name", "pattern"}
            and all(isinstance(v, str) for v in p.values())
            for p in value
        ):
            raise forms.ValidationError('A list of {"name": …, "pattern": …} objects.')
        try:
            redaction.validate_custom_patterns(
                redaction.CustomPattern(p["name"], p["pattern"]) for p in value
            )
        except redaction.InvalidPattern as exc:
            raise forms.ValidationError(str(exc), code=exc.code) from None
        return value


@admin.register(RedactionSettings)
class RedactionSettingsAdmin(TenantScopedAdmin):
    form = RedactionSettingsForm
    list_display = ["tenant", "enabled", "kinds", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["tenant"] if obj is not None else []

    def save_model(
        self, request: HttpRequest, obj: RedactionSettings, form: Any, change: bool
    ) -> None:
        try:
            row = services.redaction_settings_update(
                tenant=obj.tenant,
                enabled=form.cleaned_data["enabled"],
                kinds=form.cleaned_data["kinds"],
                custom_patterns=form.cleaned_data["custom_patterns"],
            )
        except WardenError as exc:
            messages.error(request, exc.message)
            return
        obj.pk = row.pk
