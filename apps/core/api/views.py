"""Small shared pieces for API views."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.pagination import Pagination

T = TypeVar("T")


def get_or_404(fetch: Callable[[], T], what: str) -> T:
    """Run a tenant-scoped selector; a miss (or another tenant's id) is a plain 404."""
    try:
        return fetch()
    except (ObjectDoesNotExist, DjangoValidationError) as exc:
        raise NotFound(f"No such {what}.") from exc


def bool_query_param(request: Request, name: str) -> bool | None:
    """`?name=true|false` (also 1/0, yes/no), None when absent; anything else (empty too) is
    a 400, never silently false."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ValidationError({name: ["Must be true or false."]})


def authenticated_user(request: Any) -> User | None:
    """The request's Django user, or None (anonymous, or an API key without a creator)."""
    user = getattr(request, "user", None)
    return user if isinstance(user, User) else None


class PaginatedListMixin:
    # For a view whose GET answers one page (`count`, `next`, `previous`, `results`).
    # drf-spectacular reads `pagination_class` to document the page (and `page`/`page_size`)
    # for an operation whose response is declared `Serializer(many=True)`; `paginated()`
    # pages with the same class, so the schema and the answer can't disagree.
    # (No docstring: the schema would show it as every list view's description.)

    pagination_class = Pagination


def paginated(
    request: Request,
    view: Any,
    queryset: Any,
    serializer_class: type,
    context: dict[str, Any] | None = None,
) -> Response:
    pagination_class = getattr(view, "pagination_class", None)
    if pagination_class is None:
        raise TypeError(f"{type(view).__name__} pages its answer: add PaginatedListMixin")
    paginator = pagination_class()
    page: Any = paginator.paginate_queryset(queryset, request, view=view)
    serialized = serializer_class(page, many=True, context=context or {})
    return paginator.get_paginated_response(serialized.data)
