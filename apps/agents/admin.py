"""Console: agents, sessions, each turn with its action graph as a timeline, tool jobs."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from unfold.admin import TabularInline

from apps.agents import services
from apps.agents.models import (
    ActionNode,
    Agent,
    AgentSession,
    SessionEvent,
    SessionSummary,
    ToolJob,
    Turn,
)
from apps.core.exceptions import WardenError
from apps.core.redaction import redact_payload
from apps.tenants.admin_scoping import TenantScopedAdmin, administered_tenant_ids


@admin.register(Agent)
class AgentAdmin(TenantScopedAdmin):
    list_display = [
        "name",
        "slug",
        "tenant",
        "model_tier",
        "max_steps",
        "data_sensitivity",
        "is_active",
    ]
    list_filter = ["tenant", "model_tier", "is_active"]
    search_fields = ["name", "slug"]
    filter_horizontal = ["allowed_endpoints"]
    prepopulated_fields = {"slug": ("name",)}

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        fields = {name: getattr(obj, name) for name in services._AGENT_FIELDS}
        try:
            services.agent_save(tenant=obj.tenant, agent=obj, **fields)
        except WardenError as exc:
            messages.error(request, exc.message)


class TurnInline(TabularInline):
    model = Turn
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("seq", "status", "outcome", "user_message", "final_answer", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SessionSummaryInline(TabularInline):
    """The summaries context compression made: which turns each stands in for."""

    model = SessionSummary
    fk_name = "session"
    extra = 0
    can_delete = False
    fields = ("from_seq", "through_seq", "text", "tokens_before", "tokens_after", "counter")
    readonly_fields = fields

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Whoever administers the session's tenant (memberships, not model permissions);
        # without a session (the inline's queryset), whoever administers any tenant: the
        # session's page itself is tenant-scoped.
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        if user.is_superuser:
            return True
        tenants = administered_tenant_ids(request)
        return obj.tenant_id in tenants if obj is not None else bool(tenants)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AgentSession)
class AgentSessionAdmin(TenantScopedAdmin):
    list_display = [
        "__str__",
        "agent",
        "tenant",
        "user",
        "status",
        "environment",
        "data_sensitivity",
        "tokens_used",
        "created_at",
        "timeline_link",
    ]
    list_filter = ["tenant", "status", "environment", "agent"]
    readonly_fields = ["tokens_used", "next_seq"]
    inlines = [TurnInline, SessionSummaryInline]
    actions = ["close_sessions"]

    @admin.display(description="timeline")
    def timeline_link(self, obj: AgentSession) -> str:
        # By URL name: the console (a higher layer) draws the waterfall.
        url = reverse("console:session-timeline", args=[obj.pk])
        return format_html('<a href="{}">timeline</a>', url)

    @admin.action(description="Close selected sessions (cancel queued turns)")
    def close_sessions(self, request: HttpRequest, queryset: QuerySet[AgentSession]) -> None:
        for session in queryset:
            services.session_close(session=session)
        messages.success(request, f"Closed {queryset.count()} session(s).")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)[:4000]


@admin.register(Turn)
class TurnAdmin(TenantScopedAdmin):
    list_display = [
        "__str__",
        "session",
        "tenant",
        "status",
        "outcome",
        "input_tokens",
        "output_tokens",
        "attempts",
        "created_at",
    ]
    list_filter = ["tenant", "status", "outcome"]
    search_fields = ["user_message", "final_answer"]
    actions = ["cancel_turns"]
    exclude = ["requested_by"]
    readonly_fields = [
        "session",
        "seq",
        "status",
        "outcome",
        "detail",
        "user_message",
        "final_answer",
        "input_tokens",
        "output_tokens",
        "attempts",
        "cancel_requested",
        "request_id",
        "created_at",
        "started_at",
        "finished_at",
        "timeline",
    ]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A turn's events would go with it, leaving a gap in its session's audit chain that
        # `audit verify` reports as tampering; a session is deleted whole, chain and all.
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Action graph (timeline)")
    def timeline(self, obj: Turn) -> str:
        nodes = ActionNode.objects.filter(turn=obj).order_by("position")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td><b>{}</b><br><code>{}</code></td><td>{}</td><td>{} ms</td>"
            "<td>{} / {}</td><td><code>{}</code></td><td><pre>{}</pre></td><td><pre>{}</pre></td>"
            "<td><pre>{}</pre></td></tr>",
            (
                (
                    n.position,
                    n.kind,
                    n.node_id,
                    n.status,
                    n.latency_ms,
                    n.input_tokens,
                    n.output_tokens,
                    ", ".join(n.parents),
                    _pretty(n.inputs),
                    _pretty(n.outputs),
                    # The private scratchpad never leaves the platform unredacted.
                    _pretty(redact_payload(n.scratchpad, n.tenant_id)),
                )
                for n in nodes
            ),
        )
        return format_html(
            "<table><thead><tr><th>#</th><th>node</th><th>status</th><th>latency</th>"
            "<th>tokens in/out</th><th>parents</th><th>inputs</th><th>outputs</th>"
            "<th>scratchpad (private)</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.action(description="Cancel selected turns")
    def cancel_turns(self, request: HttpRequest, queryset: QuerySet[Turn]) -> None:
        for turn in queryset:
            try:
                services.turn_cancel(turn=turn)
            except WardenError as exc:
                messages.warning(request, f"{turn}: {exc.message}")


@admin.register(SessionEvent)
class SessionEventAdmin(TenantScopedAdmin):
    list_display = ["id", "type", "session", "turn", "created_at"]
    list_filter = ["tenant", "type"]
    readonly_fields = [
        "session",
        "turn",
        "type",
        "payload",
        "created_at",
        "chain_seq",
        "prev_hash",
        "hash",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # append-only: a gap in a kept session's chain is what `audit verify` flags


@admin.register(ToolJob)
class ToolJobAdmin(TenantScopedAdmin):
    list_display = ["tool_name", "tenant", "status", "progress", "attempts", "created_at"]
    list_filter = ["tenant", "status"]
    readonly_fields = [
        "turn",
        "node_id",
        "tool",
        "tool_name",
        "arguments",
        "status",
        "attempts",
        "progress",
        "progress_total",
        "progress_message",
        "error",
        "started_at",
        "finished_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
