import logging

from apps.core.context import current_request_id


class RequestIdFilter(logging.Filter):
    """Stamps every log record with the current request (or task) id."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True
