"""Small shared pieces for API views."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.pagination import Pagination

T = TypeVar("T")


def get_or_404(fetch: Callable[[], T], what: str) -> T:
    """Run a tenant-scoped selector; a miss (or another tenant's id) is a plain 404."""
    try:
        return fetch()
    except (ObjectDoesNotExist, ValidationError) as exc:
        raise NotFound(f"No such {what}.") from exc


def authenticated_user(request: Any) -> User | None:
    """The request's Django user, or None (anonymous, or an API key without a creator)."""
    user = getattr(request, "user", None)
    return user if isinstance(user, User) else None


def paginated(
    request: Request,
    view: Any,
    queryset: Any,
    serializer_class: type,
    context: dict[str, Any] | None = None,
) -> Response:
    paginator = Pagination()
    page: Any = paginator.paginate_queryset(queryset, request, view=view)
    serialized = serializer_class(page, many=True, context=context or {})
    return paginator.get_paginated_response(serialized.data)
