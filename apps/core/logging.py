import logging
from typing import Any

from apps.core.context import current_request_id
from apps.core.redaction import redact_payload, redact_text

# What a LogRecord carries of its own; everything else on it came in through `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
}


class RequestIdFilter(logging.Filter):
    """Stamps every log record with the current request (or task) id."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True


class RedactFilter(logging.Filter):
    """Scrubs PII and credentials (apps.core.redaction, platform defaults) from a record before a
    handler writes it: the message with its arguments, the exception and stack text, and the
    string values passed through `extra=`.

    A record is shared by every handler it reaches, so it is rewritten in place (the message
    formatted, `args` dropped, the traceback formatted into `exc_text`; a second pass finds
    nothing left to change); formatters then print what is left. A record whose message can't
    be formatted is left to the handler's own error path.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict) and not record.args:
            record.msg = redact_payload(record.msg)  # python-json-logger's structured message
        else:
            try:
                message = record.getMessage()
            except Exception:
                return True
            record.msg, record.args = redact_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
            # Formatters print exc_text only when they are not given exc_info to format afresh.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _RECORD_FIELDS and isinstance(value, str | dict | list | tuple):
                setattr(record, name, _redacted(value))
        return True


def _redacted(value: Any) -> Any:
    return redact_text(value) if isinstance(value, str) else redact_payload(value)
