from django.urls import path

from apps.agents.api import sse, views

urlpatterns = [
    path("agents", views.AgentListApi.as_view(), name="agent-list"),
    path("agents/<uuid:agent_id>", views.AgentDetailApi.as_view(), name="agent-detail"),
    path("sessions", views.SessionListApi.as_view(), name="session-list"),
    path("sessions/<uuid:session_id>", views.SessionDetailApi.as_view(), name="session-detail"),
    path("sessions/<uuid:session_id>/close", views.SessionCloseApi.as_view(), name="session-close"),
    path("sessions/<uuid:session_id>/state", views.SessionStateApi.as_view(), name="session-state"),
    path("sessions/<uuid:session_id>/turns", views.TurnListApi.as_view(), name="session-turns"),
    path("sessions/<uuid:session_id>/events", sse.session_events, name="session-events"),
    path(
        "sessions/<uuid:session_id>/replay", views.SessionReplayApi.as_view(), name="session-replay"
    ),
    path("sessions/<uuid:session_id>/audit", views.SessionAuditApi.as_view(), name="session-audit"),
    path("turns/<uuid:turn_id>", views.TurnDetailApi.as_view(), name="turn-detail"),
    path("turns/<uuid:turn_id>/cancel", views.TurnCancelApi.as_view(), name="turn-cancel"),
    path("turns/<uuid:turn_id>/steps", views.TurnStepsApi.as_view(), name="turn-steps"),
]
