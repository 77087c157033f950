from django.urls import path

from apps.llm.api import views

urlpatterns = [
    path("model-endpoints", views.EndpointListApi.as_view(), name="endpoint-list"),
    path(
        "model-endpoints/<uuid:endpoint_id>",
        views.EndpointDetailApi.as_view(),
        name="endpoint-detail",
    ),
]
