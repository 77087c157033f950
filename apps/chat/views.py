"""`/chat/`: the end users' chat, server-rendered; static/chat/chat.js streams a session.

Views translate HTTP; what a person may see and do is decided by the same selectors,
services and `authz` permissions as the REST API and the websocket. Messages, steps and
approvals then travel over the websocket (`/ws/sessions/<id>/`) and the REST API with the
session cookie, so the browser uses exactly the channels every other client uses.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from apps.agents import selectors, services
from apps.agents.models import Agent, AgentSession
from apps.budgets.selectors import budget_caps_for, usage_totals
from apps.chat.sso import sso_enabled
from apps.core.exceptions import WardenError
from apps.tenants.authentication import identity_for_user
from apps.tenants.authz import Permission, allows, authorize
from apps.tenants.identity import Identity
from apps.tenants.selectors import memberships_for_user

TENANT_KEY = "chat_tenant"
LOGIN_URL = "chat:login"


class ChatLoginView(LoginView):
    """Console accounts (Django auth, django-axes lockout) sign in to the chat."""

    template_name = "chat/login.html"
    redirect_authenticated_user = True

    def get_default_redirect_url(self) -> str:
        return reverse("chat:index")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["expired"] = self.request.GET.get("expired") == "1"
        # "Sign in with SSO" (apps.chat.sso) when the issuer and a client id are configured.
        context["sso_enabled"] = sso_enabled()
        return context


@require_POST
def chat_logout(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect(LOGIN_URL)


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


def _identity(request: HttpRequest) -> Identity | None:
    """The person's identity in the tenant they picked (else their first)."""
    slug = request.GET.get("tenant") or request.session.get(TENANT_KEY)
    identity = identity_for_user(_user(request), slug)
    if identity is None and slug:
        identity = identity_for_user(_user(request), None)
    if identity is not None:
        _remember_tenant(request, identity)
    return identity


def _remember_tenant(request: HttpRequest, identity: Identity) -> None:
    # Written only when it changes: a session write re-sends the cookie on every response.
    if request.session.get(TENANT_KEY) != identity.tenant.slug:
        request.session[TENANT_KEY] = identity.tenant.slug


def _session_for(request: HttpRequest, session_id: uuid.UUID) -> tuple[Identity, AgentSession]:
    """The session if the person may read it in one of their tenants; else 404 (not 403: a
    session of another tenant, or another member's, does not exist for them)."""
    for membership in memberships_for_user(user=_user(request)):
        identity = identity_for_user(_user(request), membership.tenant.slug)
        if identity is None or not allows(identity, Permission.SESSION_READ):
            continue
        try:
            session = selectors.session_get(identity=identity, session_id=session_id)
        except AgentSession.DoesNotExist:
            continue
        _remember_tenant(request, identity)
        return identity, session
    raise Http404("No such session.")


def _sidebar(request: HttpRequest, identity: Identity) -> dict[str, Any]:
    may_start = allows(identity, Permission.SESSION_MANAGE)
    agents: list[Agent] = (
        list(selectors.agent_list(tenant=identity.tenant).filter(is_active=True).order_by("name"))
        if may_start
        else []
    )
    sessions = selectors.session_list(identity=identity).order_by("-updated_at")[:50]
    return {
        "identity": identity,
        "tenants": [m.tenant for m in memberships_for_user(user=_user(request))],
        "agents": agents,
        "may_start": may_start,
        "chat_sessions": sessions,
    }


@login_required(login_url=LOGIN_URL)
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    identity = _identity(request)
    if identity is None:
        return render(request, "chat/no_tenant.html", status=403)
    return render(request, "chat/index.html", _sidebar(request, identity))


@login_required(login_url=LOGIN_URL)
@require_POST
def session_new(request: HttpRequest) -> HttpResponse:
    identity = _identity(request)
    if identity is None:
        return render(request, "chat/no_tenant.html", status=403)
    try:
        authorize(identity, Permission.SESSION_MANAGE)
        agent_id = uuid.UUID(request.POST.get("agent", ""))
        agent = selectors.agent_get(tenant=identity.tenant, agent_id=agent_id)
        session = services.session_create(
            tenant=identity.tenant,
            agent=agent,
            user=_user(request),
            title=request.POST.get("title", "").strip()[:200],
        )
    except (ValueError, Agent.DoesNotExist):
        messages.error(request, "Pick one of the agents listed.")
        return redirect("chat:index")
    except WardenError as exc:
        messages.error(request, exc.message)
        return redirect("chat:index")
    return redirect("chat:session", session_id=session.id)


@login_required(login_url=LOGIN_URL)
@require_GET
def session_page(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    identity, session = _session_for(request, session_id)
    context = {
        **_sidebar(request, identity),
        "session": session,
        "config": {
            "sessionId": str(session.id),
            "tenant": identity.tenant.slug,
            "websocket": f"/ws/sessions/{session.id}/",
            "canSend": allows(identity, Permission.TURN_START),
            "canDecide": allows(identity, Permission.APPROVAL_DECIDE),
            # Four eyes (apps/approvals): whoever asked for a turn may reject its call but
            # not approve it, unless the deployment allows it; the page offers what works.
            "username": _user(request).get_username(),
            "selfApprove": bool(settings.WARDEN_APPROVAL_ALLOW_SELF),
            "meterUrl": reverse("chat:session-meter", kwargs={"session_id": session.id}),
            "loginUrl": reverse(LOGIN_URL),
            "pagePath": request.path,
        },
    }
    return render(request, "chat/session.html", context)


@login_required(login_url=LOGIN_URL)
@require_POST
def session_rename(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    identity, session = _session_for(request, session_id)
    try:
        authorize(identity, Permission.SESSION_MANAGE)
        services.session_rename(session=session, title=request.POST.get("title", ""))
    except WardenError as exc:
        messages.error(request, exc.message)
    return redirect("chat:session", session_id=session.id)


def _figures(tokens: int, cost: Any, limit: int | None) -> dict[str, Any]:
    return {
        "tokens": tokens,
        "cost": f"{cost:.4f}",
        "limit": limit,
        "percent": min(100, round(100 * tokens / limit)) if limit else None,
    }


@require_GET
def session_meter(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """The budget meter: this session's tokens and the person's own today (UTC), against the
    caps that apply. JSON 401 (not a redirect) when the login ended, so the page can say so."""
    if not request.user.is_authenticated:
        return JsonResponse(
            {"code": "not_authenticated", "message": "Your sign-in has ended."}, status=401
        )
    identity, session = _session_for(request, session_id)
    caps = budget_caps_for(
        tenant=identity.tenant, agent_id=session.agent_id, user_id=identity.user_id
    )
    session_cap = caps["session"]
    session_limit = (
        session_cap.max_tokens if session_cap is not None else None
    ) or session.agent.max_tokens_per_session
    s_tokens, s_cost = usage_totals(tenant=identity.tenant, session_id=session.id)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    d_tokens, d_cost = usage_totals(
        tenant=identity.tenant, user_id=identity.user_id, since=midnight
    )
    day_cap = caps["day"]
    return JsonResponse(
        {
            "session": _figures(max(s_tokens, session.tokens_used), s_cost, session_limit),
            "day": _figures(d_tokens, d_cost, day_cap.max_tokens if day_cap else None),
        }
    )
