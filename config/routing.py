"""Websocket routes."""

from django.urls import path

from apps.core.consumers import TenantEventsConsumer

websocket_urlpatterns = [
    path("ws/tenant/", TenantEventsConsumer.as_asgi()),
]
