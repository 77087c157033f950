"""Authenticate a plain Django request (async views, SSE) with the API's own classes."""

from __future__ import annotations

from django.http import HttpRequest
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request
from rest_framework.settings import api_settings

from apps.tenants.identity import Identity


def authenticate_request(request: HttpRequest) -> Identity:
    """The request's Identity, or a DRF APIException (401/403/503) saying why not."""
    classes = api_settings.DEFAULT_AUTHENTICATION_CLASSES
    drf_request = Request(request, authenticators=[cls() for cls in classes])  # type: ignore[operator]
    identity = drf_request.auth
    if not isinstance(identity, Identity):
        raise NotAuthenticated()
    return identity
