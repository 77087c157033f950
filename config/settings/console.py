"""The operator console at /admin/ (django-unfold): title, colours, and the sidebar grouped
by domain. The sidebar and the dashboard are built per request by apps.console (named here
by dotted path, so importing settings imports no app); unfold serves its own fonts and
scripts from its static files, so the console fetches nothing from the internet."""

from __future__ import annotations

from typing import Any

UNFOLD: dict[str, Any] = {
    "SITE_TITLE": "Warden console",
    "SITE_HEADER": "Warden",
    "SITE_SUBHEADER": "governance for LLM agents",
    "SITE_SYMBOL": "shield",
    "SITE_URL": "/",
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": False,
    "DASHBOARD_CALLBACK": "apps.console.dashboard.dashboard_callback",
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": False,
        "navigation": "apps.console.navigation.sidebar_navigation",
    },
}

# Where a sign-in without a `next` lands. Django's admin login form carries the admin index
# as a hidden `next`; unfold's does not, so without this it would land on Django's default
# /accounts/profile/ (a 404). A sign-in that came from a page (?next=) returns there.
LOGIN_REDIRECT_URL = "/admin/"
