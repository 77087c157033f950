"""Websocket routes."""

from django.urls import path

from apps.agents.consumers import SessionConsumer
from apps.tenants.consumers import TenantEventsConsumer

websocket_urlpatterns = [
    path("ws/tenant/", TenantEventsConsumer.as_asgi()),
    path("ws/sessions/<str:session_id>/", SessionConsumer.as_asgi()),
]
