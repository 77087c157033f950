"""Console: a tenant's policies — edit the Rego source, the mode and the scope, see every
version. Saving goes through the same services as the API (so every save is a new version,
and a source that does not compile is refused with the compiler's line and column)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from unfold.admin import TabularInline

from apps.core.exceptions import WardenError
from apps.policies import services, whatif
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


class WhatIfForm(forms.Form):
    """The window and the version of a what-if, as the console asks for them."""

    version = forms.TypedChoiceField(coerce=int, help_text="Default: the newest not enforced.")
    since = forms.DateTimeField(
        required=False, help_text="Recorded tool calls since (default: the last 7 days)."
    )
    sessions = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Or these session ids only (one per line); overrides the time.",
    )

    def __init__(self, *args: Any, policy: Policy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        versions = PolicyVersion.objects.filter(tenant_id=policy.tenant_id, policy=policy).order_by(
            "-number"
        )
        version_field = self.fields["version"]
        assert isinstance(version_field, forms.TypedChoiceField)
        version_field.choices = [
            (v.number, f"v{v.number} ({v.get_mode_display()})") for v in versions
        ]
        default = whatif.what_if_version(policy=policy, number=None) if versions else None
        if default is not None:
            self.fields["version"].initial = default.number

    def clean_sessions(self) -> list[uuid.UUID] | None:
        raw = self.cleaned_data.get("sessions") or ""
        lines = [line.strip() for line in raw.split() if line.strip()]
        try:
            return [uuid.UUID(line) for line in lines] or None
        except ValueError:
            raise forms.ValidationError("One session id (a UUID) per line.") from None


@admin.register(Policy)
class PolicyAdmin(TenantScopedAdmin):
    form = PolicyForm
    list_display = ["name", "tenant", "mode", "agent_slug", "tool_name", "version", "updated_at"]
    list_filter = ["tenant", "mode"]
    search_fields = ["name", "description", "agent_slug", "tool_name"]
    inlines = [PolicyVersionInline]
    readonly_fields = ["what_if"]
    actions = ["run_what_if"]

    @admin.display(description="what-if")
    def what_if(self, obj: Policy) -> str:
        if not obj.pk:
            return "-"
        url = reverse("admin:policies_policy_what_if", args=[obj.pk])
        return format_html(
            '<a class="button" href="{}">What would this policy have decided?</a>', url
        )

    @admin.action(description="Run a what-if on recorded tool calls")
    def run_what_if(self, request: HttpRequest, queryset: QuerySet[Policy]) -> Any:
        if queryset.count() != 1:
            messages.error(request, "Choose exactly one policy for a what-if.")
            return None
        policy = queryset.get()
        return HttpResponseRedirect(reverse("admin:policies_policy_what_if", args=[policy.pk]))

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<uuid:policy_id>/what-if/",
                self.admin_site.admin_view(self.what_if_view),
                name="policies_policy_what_if",
            ),
            *super().get_urls(),
        ]

    def what_if_view(self, request: HttpRequest, policy_id: Any) -> HttpResponse:
        """The what-if for a chosen window: the same service as the API, the report below."""
        policy = self.get_queryset(request).filter(id=policy_id).first()
        if policy is None or not self.has_view_permission(request, policy):
            raise Http404("No such policy.")
        form = WhatIfForm(request.POST or None, policy=policy)
        report: dict[str, Any] | None = None
        if request.method == "POST" and form.is_valid():
            sessions = form.cleaned_data["sessions"]
            since = None
            if sessions is None:
                since = form.cleaned_data["since"] or timezone.now() - timedelta(days=7)
            try:
                report = whatif.policy_what_if(
                    policy=policy,
                    version_number=form.cleaned_data["version"],
                    session_ids=sessions,
                    since=since,
                ).as_dict()
            except WardenError as exc:
                messages.error(request, f"{exc.code}: {exc.message}")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"What-if: {policy.name}",
            "policy": policy,
            "form": form,
            "report": report,
        }
        return TemplateResponse(request, "admin/policies/policy/what_if.html", context)

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
