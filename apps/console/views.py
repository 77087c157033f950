"""Console pages beyond the ModelAdmins: the session timeline. Wrapped by the admin site
(`admin_view`), so an expired login lands on the sign-in page and comes back here."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from apps.agents.models import AgentSession
from apps.approvals.selectors import tenant_ids_deciding
from apps.approvals.services import user_identity
from apps.console.timeline import session_timeline
from apps.tenants.admin_scoping import administered_tenant_ids


def _viewable_tenant_ids(request: HttpRequest) -> set[Any]:
    # Admins of the tenant, and whoever decides its approvals there (they need the story
    # to decide; what they may read of it is their role's business, below).
    return administered_tenant_ids(request) | tenant_ids_deciding(user=request.user)


def session_timeline_view(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    sessions = AgentSession.objects.select_related("agent", "tenant", "user")
    if not request.user.is_superuser:
        sessions = sessions.filter(tenant_id__in=_viewable_tenant_ids(request))
    session = sessions.filter(id=session_id).first()
    identity = (
        user_identity(user=request.user, tenant_id=session.tenant_id)  # type: ignore[arg-type]
        if session is not None
        else None
    )
    if session is None or identity is None:
        raise Http404("No such session.")
    timeline = session_timeline(session=session, identity=identity)
    context = {
        **admin.site.each_context(request),
        "title": f"Timeline — {session}",
        "timeline": timeline,
        "session": session,
        "opts": AgentSession._meta,
    }
    return TemplateResponse(request, "console/timeline.html", context)
