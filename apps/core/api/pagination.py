from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request


def _positive_int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ValidationError({name: ["Must be a whole number from 1."]})
    return int(raw)


class Pagination(PageNumberPagination):
    """`?page=N&page_size=M`; responses carry count, next, previous, results.

    Stricter than DRF's: a `page` or `page_size` that is not a whole number from 1 is a 400
    (DRF answers 404 for the first and quietly ignores the second). A `page_size` over
    `max_page_size` is cut to it; a page past the last is a 404.
    """

    page_size_query_param = "page_size"
    max_page_size = 500
    last_page_strings = ()  # the schema says `page` is a number

    def get_page_size(self, request: Request) -> int:
        size = _positive_int(request, self.page_size_query_param)
        if size is None:
            return int(self.page_size or 1)
        return min(size, self.max_page_size)

    def paginate_queryset(
        self, queryset: Any, request: Request, view: Any = None
    ) -> list[Any] | None:
        _positive_int(request, self.page_query_param)
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound as exc:  # DRF's InvalidPage: here only a page past the last
            raise NotFound("No such page: it is past the last one.") from exc

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = (
                    f"Results per page (default {self.page_size}; more than "
                    f"{self.max_page_size} is cut to {self.max_page_size})."
                )
        return parameters
