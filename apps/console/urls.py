from django.contrib import admin
from django.urls import URLPattern, path

from apps.console import views

app_name = "console"

urlpatterns: list[URLPattern] = [
    path(
        "sessions/<uuid:session_id>/timeline/",
        admin.site.admin_view(views.session_timeline_view),
        name="session-timeline",
    ),
]
