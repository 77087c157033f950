from django.urls import path

from apps.chat import sso, views

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("login/", views.ChatLoginView.as_view(), name="login"),
    path("oidc/start", sso.sso_start, name="oidc-start"),
    path("oidc/callback", sso.sso_callback, name="oidc-callback"),
    path("logout/", views.chat_logout, name="logout"),
    path("sessions/new", views.session_new, name="session-new"),
    path("s/<uuid:session_id>/", views.session_page, name="session"),
    path("s/<uuid:session_id>/rename", views.session_rename, name="session-rename"),
    path("s/<uuid:session_id>/meter", views.session_meter, name="session-meter"),
]
