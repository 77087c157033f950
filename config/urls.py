"""URL routes. The user-facing surface is fixed by ARCHITECTURE.md."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.approvals.interactions import slack_interactions
from apps.core import views as core_views

api_v1: list[URLPattern | URLResolver] = [
    path("", include("apps.tenants.api.urls")),
    path("", include("apps.llm.api.urls")),
    path("", include("apps.agents.api.urls")),
    path("", include("apps.tools.api.urls")),
    path("", include("apps.approvals.api.urls")),
    path("", include("apps.policies.api.urls")),
    path("", include("apps.budgets.api.urls")),
    path("", include("apps.memory.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("metrics", core_views.metrics, name="metrics"),
    # Before the admin's catch-all: console pages that are not a ModelAdmin's.
    path("admin/console/", include("apps.console.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("chat/", include("apps.chat.urls")),
    path("integrations/slack/interactions/", slack_interactions, name="slack-interactions"),
]

handler400 = "apps.core.views.bad_request"
handler404 = "apps.core.views.not_found"
handler500 = "apps.core.views.server_error"
