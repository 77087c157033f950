from django.urls import path

from apps.memory.api import views

urlpatterns = [
    path("memory/documents", views.DocumentListApi.as_view(), name="memory-document-list"),
    path(
        "memory/documents/<uuid:document_id>",
        views.DocumentDetailApi.as_view(),
        name="memory-document-detail",
    ),
    path("memory/search", views.SearchApi.as_view(), name="memory-search"),
]
