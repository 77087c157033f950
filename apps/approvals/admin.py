"""Console: the pending-approvals queue (one click to approve; reject asks why), and the
Slack settings and identities an admin sets.

The queue shows a tenant's requests to whoever may decide them there — approvers, admins and
owners (the platform operator everywhere); deciding goes through the same service as the API
and Slack. An approver needs console access (staff) to sign in to the console at all.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from apps.approvals import selectors, services
from apps.approvals.models import (
    ApprovalRequest,
    ApprovalStatus,
    DecidedVia,
    SlackIdentity,
    SlackSettings,
)
from apps.core.api.views import authenticated_user
from apps.core.exceptions import WardenError
from apps.tenants.admin_scoping import TenantScopedAdmin, administered_tenant_ids
from apps.tenants.models import Membership


def _deciding_tenant_ids(request: HttpRequest) -> set[Any]:
    cache = getattr(request, "_warden_deciding_tenants", None)
    if cache is None:
        cache = selectors.tenant_ids_deciding(user=request.user)
        request._warden_deciding_tenants = cache  # type: ignore[attr-defined]
    return cache


class RejectForm(forms.Form):
    rationale = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        max_length=services.MAX_RATIONALE,
        help_text="Required. The agent is told this, and it is kept on the timeline.",
    )


_DETAIL_FIELDS: tuple[str, ...] = (
    "tenant",
    "status",
    "decide",
    "tool_name",
    "agent",
    "requester",
    "arguments",
    "arguments_digest",
    "why",
    "spent_so_far",
    "turn_link",
    "call_key",
    "approver",
    "decided_via",
    "rationale",
    "decided_at",
    "expires_at",
    "created_at",
)


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(TenantScopedAdmin):
    list_display = [
        "created_at",
        "tool_name",
        "agent",
        "requester",
        "tenant",
        "status",
        "why",
        "expires_at",
        "decide",
    ]
    list_filter = ["status", "tenant"]
    search_fields = ["tool_name", "approver"]
    ordering = ["-created_at"]
    fields = _DETAIL_FIELDS
    readonly_fields = _DETAIL_FIELDS

    # --- who sees what: the tenants where the user may decide --------------------------

    def scoped_tenant_ids(self, request: HttpRequest) -> set[Any]:
        return _deciding_tenant_ids(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApprovalRequest]:
        return super().get_queryset(request).select_related("tenant", "requested_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # The queue opens on what waits for a decision.
        if not request.GET:
            return HttpResponseRedirect(f"{request.path}?status__exact={ApprovalStatus.PENDING}")
        return super().changelist_view(request, extra_context)

    # --- columns ------------------------------------------------------------------------

    @admin.display(description="agent")
    def agent(self, obj: ApprovalRequest) -> str:
        return str((obj.context or {}).get("agent", ""))

    @admin.display(description="requested by")
    def requester(self, obj: ApprovalRequest) -> str:
        return obj.requested_by.get_username() if obj.requested_by else "—"

    @admin.display(description="reasons")
    def why(self, obj: ApprovalRequest) -> str:
        return "; ".join(obj.reasons) or "—"

    @admin.display(description="arguments (redacted)")
    def arguments(self, obj: ApprovalRequest) -> str:
        text = json.dumps(obj.arguments_summary, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html("<pre>{}</pre>", text[:4000])

    @admin.display(description="spent so far")
    def spent_so_far(self, obj: ApprovalRequest) -> str:
        ctx = obj.context or {}
        tokens = int(ctx.get("input_tokens", 0)) + int(ctx.get("output_tokens", 0))
        seconds = int(ctx.get("elapsed_ms", 0)) / 1000
        return f"{tokens} tokens, ${ctx.get('cost_usd', '0')}, {seconds:.1f} s"

    @admin.display(description="turn")
    def turn_link(self, obj: ApprovalRequest) -> str:
        # By URL name: apps.agents is a higher layer and is not imported.
        url = reverse("admin:agents_turn_change", args=[obj.turn_id])
        return format_html('<a href="{}">{}</a>', url, obj.turn_id)

    @admin.display(description="decision")
    def decide(self, obj: ApprovalRequest) -> str:
        if not obj.is_pending:
            who = f" by {obj.approver}" if obj.approver else ""
            return f"{obj.get_status_display()}{who}"
        approve = reverse("admin:approvals_approvalrequest_approve", args=[obj.pk])
        reject = reverse("admin:approvals_approvalrequest_reject", args=[obj.pk])
        # The changelist and the detail page are inside a POST form that carries the CSRF
        # token: the button posts it to the approve view, one click.
        return format_html(
            '<span class="inline-flex gap-2 whitespace-nowrap">'
            '<button type="submit" class="button default bg-primary-600 text-white font-medium '
            'rounded-default px-3 py-1 hover:bg-primary-700" formaction="{}" formmethod="post" '
            'name="_approve" value="{}">Approve</button>'
            '<a class="button border border-base-200 text-red-600 font-medium rounded-default '
            'px-3 py-1" href="{}">Reject…</a></span>',
            approve,
            obj.pk,
            reject,
        )

    # --- the decisions ------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<uuid:approval_id>/approve/",
                self.admin_site.admin_view(self.approve_view),
                name="approvals_approvalrequest_approve",
            ),
            path(
                "<uuid:approval_id>/reject/",
                self.admin_site.admin_view(self.reject_view),
                name="approvals_approvalrequest_reject",
            ),
            *super().get_urls(),
        ]

    def _for_decision(self, request: HttpRequest, approval_id: Any) -> services.Decider:
        approval = self.get_queryset(request).filter(id=approval_id).first()
        if approval is None or not self._allowed(request, approval):
            raise Http404("No such approval request.")
        user = authenticated_user(request)
        identity = services.user_identity(user=user, tenant_id=approval.tenant_id) if user else None
        if identity is None:
            raise PermissionDenied
        return services.Decider(identity=identity, via=DecidedVia.CONSOLE, user=user)

    def _queue_url(self) -> str:
        changelist = reverse("admin:approvals_approvalrequest_changelist")
        return f"{changelist}?status__exact={ApprovalStatus.PENDING}"

    def approve_view(self, request: HttpRequest, approval_id: Any) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseRedirect(self._queue_url())
        decider = self._for_decision(request, approval_id)
        try:
            approval = services.approval_decide(
                approval_id=approval_id, decider=decider, approved=True
            )
        except WardenError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Approved {approval.tool_name}: the turn resumes.")
        return HttpResponseRedirect(self._queue_url())

    def reject_view(self, request: HttpRequest, approval_id: Any) -> HttpResponse:
        decider = self._for_decision(request, approval_id)
        approval = self.get_queryset(request).get(id=approval_id)
        form = RejectForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.approval_decide(
                    approval_id=approval_id,
                    decider=decider,
                    approved=False,
                    rationale=form.cleaned_data["rationale"],
                )
            except WardenError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Rejected {approval.tool_name}: it will not run.")
            return HttpResponseRedirect(self._queue_url())
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Reject {approval.tool_name}",
            "approval": approval,
            "arguments": json.dumps(approval.arguments_summary, indent=2, ensure_ascii=False),
            "form": form,
            "queue_url": self._queue_url(),
        }
        return TemplateResponse(request, "admin/approvals/approvalrequest/reject.html", context)


# --------------------------------------------------------------------------- Slack


@admin.register(SlackSettings)
class SlackSettingsAdmin(TenantScopedAdmin):
    """Which channel a tenant's cards go to (owners and admins)."""

    list_display = ["tenant", "channel_id", "team_id", "enabled"]
    list_filter = ["enabled"]
    fields = ["tenant", "channel_id", "team_id", "enabled"]


class SlackIdentityForm(forms.ModelForm):
    request: HttpRequest

    class Meta:
        model = SlackIdentity
        fields = ["tenant", "user", "slack_user_id"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        users = get_user_model().objects.filter(is_active=True)
        if not self.request.user.is_superuser:
            # Only members of the tenants this admin administers.
            members = Membership.objects.filter(tenant_id__in=administered_tenant_ids(self.request))
            users = users.filter(id__in=members.values("user_id"))
        self.fields["user"].queryset = users.order_by("username")  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        tenant, user = data.get("tenant"), data.get("user")
        if tenant is not None and user is not None:
            if not Membership.objects.filter(tenant=tenant, user=user).exists():
                raise forms.ValidationError(f"{user} is not a member of {tenant}.")
        return data


@admin.register(SlackIdentity)
class SlackIdentityAdmin(TenantScopedAdmin):
    """Which platform user a Slack user is (owners and admins link them); whether they may
    decide is their membership's role when they click."""

    list_display = ["slack_user_id", "user", "tenant", "created_at"]
    list_filter = ["tenant"]
    search_fields = ["slack_user_id", "user__username"]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        kwargs["form"] = type("SlackIdentityForm", (SlackIdentityForm,), {"request": request})
        return super().get_form(request, obj, change=change, **kwargs)
