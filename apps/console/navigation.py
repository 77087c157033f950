"""The console's sidebar (UNFOLD["SIDEBAR"]["navigation"] names `sidebar_navigation`): the
registered ModelAdmins grouped by domain, each shown only to who may open it — the same
`has_module_permission` the scoping mixin answers, so the sidebar never offers a page that
would refuse. A group whose app is not installed (memory, before it lands) has no entries
and is left out."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse

# (group title, [(app label, model name, icon)]); "*" takes every model of the app.
GROUPS: list[tuple[str, list[tuple[str, str, str]]]] = [
    (
        "Tenants and identity",
        [
            ("tenants", "tenant", "apartment"),
            ("tenants", "membership", "group"),
            ("tenants", "invitation", "mail"),
            ("tenants", "apikey", "key"),
            ("approvals", "slackidentity", "badge"),
            ("auth", "user", "person"),
            ("auth", "group", "groups"),
        ],
    ),
    (
        "Agents and sessions",
        [
            ("agents", "agent", "smart_toy"),
            ("agents", "agentsession", "forum"),
            ("agents", "turn", "timeline"),
            ("agents", "sessionevent", "receipt_long"),
            ("agents", "tooljob", "work_history"),
            ("llm", "*", "hub"),
        ],
    ),
    ("Tools", [("tools", "*", "construction")]),
    ("Policies", [("policies", "*", "policy")]),
    (
        "Approvals",
        [
            ("approvals", "approvalrequest", "approval"),
            ("approvals", "slacksettings", "tag"),
        ],
    ),
    ("Cost", [("budgets", "*", "payments")]),
    ("Memory", [("memory", "*", "neurology")]),
]


def _entries(app_label: str, model_name: str) -> list[tuple[Any, Any]]:
    return [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label == app_label
        and (model_name == "*" or model._meta.model_name == model_name)
    ]


def sidebar_navigation(request: HttpRequest) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = [
        {
            "title": "Console",
            "items": [
                {"title": "Dashboard", "icon": "dashboard", "link": reverse("admin:index")},
            ],
        }
    ]
    seen: set[Any] = set()
    for title, specs in GROUPS:
        items = []
        for app_label, model_name, icon in specs:
            for model, model_admin in _entries(app_label, model_name):
                if model in seen or not model_admin.has_module_permission(request):
                    continue
                seen.add(model)
                opts = model._meta
                items.append(
                    {
                        "title": str(opts.verbose_name_plural).capitalize(),
                        "icon": icon,
                        "link": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
                    }
                )
        if items:
            groups.append({"title": title, "separator": True, "items": items})
    return groups
