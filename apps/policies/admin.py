"""Console: a tenant's policies — edit the Rego source, the mode and the scope, see every
version. Saving goes through the same services as the API (so every save is a new version,
and a source that does not compile is refused with the compiler's line and column)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from unfold.admin import TabularInline

from apps.core.exceptions import WardenError
from apps.policies import services
from apps.policies.models import Policy, PolicyVersion
from apps.tenants.admin_scoping import TenantScopedAdmin


class PolicyForm(forms.ModelForm):
    source = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 24, "cols": 100, "style": "font-family: monospace"}),
        strip=False,
        help_text="Rego. The entry point must produce {allow, require_approval, reasons, "
        "obligations}.",
    )

    class Meta:
        model = Policy
        fields = ["tenant", "name", "description", "mode", "entry_point", "agent_slug", "tool_name"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.current_version:
            self.fields["source"].initial = self.instance.current_version.source

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        source, entry_point = data.get("source"), data.get("entry_point")
        if source is not None and entry_point:
            try:
                services.policy_source_check(source=source, entry_point=entry_point)
            except WardenError as exc:
                self.add_error("source", exc.message)
        return data


class PolicyVersionInline(TabularInline):
    model = PolicyVersion
    fk_name = "policy"
    extra = 0
    can_delete = False
    ordering = ["-number"]
    fields = ("number", "mode", "agent_slug", "tool_name", "author_label", "created_at", "source")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Policy)
class PolicyAdmin(TenantScopedAdmin):
    form = PolicyForm
    list_display = ["name", "tenant", "mode", "agent_slug", "tool_name", "version", "updated_at"]
    list_filter = ["tenant", "mode"]
    search_fields = ["name", "description", "agent_slug", "tool_name"]
    inlines = [PolicyVersionInline]

    @admin.display(description="version")
    def version(self, obj: Policy) -> int | None:
        return obj.current_version.number if obj.current_version else None

    def save_model(self, request: HttpRequest, obj: Policy, form: Any, change: bool) -> None:
        data = form.cleaned_data
        author = services.Author.of(request.user if request.user.is_authenticated else None)  # type: ignore[arg-type]
        fields = {
            name: data[name]
            for name in ("name", "description", "mode", "entry_point", "agent_slug", "tool_name")
        }
        if change:
            saved = services.policy_update(
                policy=Policy.objects.get(pk=obj.pk), author=author, source=data["source"], **fields
            )
        else:
            saved = services.policy_create(
                tenant=data["tenant"], author=author, source=data["source"], **fields
            )
        obj.pk, obj.current_version = saved.pk, saved.current_version

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None  # versions are written by the services only
