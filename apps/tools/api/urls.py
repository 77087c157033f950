from django.urls import path

from apps.tools.api import views

urlpatterns = [
    path("mcp-servers", views.McpServerListApi.as_view(), name="mcp-server-list"),
    path(
        "mcp-server-templates",
        views.McpServerTemplateListApi.as_view(),
        name="mcp-server-template-list",
    ),
    path(
        "mcp-servers/<uuid:server_id>",
        views.McpServerDetailApi.as_view(),
        name="mcp-server-detail",
    ),
    path(
        "mcp-servers/<uuid:server_id>/discover",
        views.McpServerDiscoverApi.as_view(),
        name="mcp-server-discover",
    ),
    path("tools", views.ToolListApi.as_view(), name="tool-list"),
    path("tools/<uuid:tool_id>", views.ToolDetailApi.as_view(), name="tool-detail"),
    path("tools/<uuid:tool_id>/approve", views.ToolApproveApi.as_view(), name="tool-approve"),
]
