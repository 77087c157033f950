"""Structured JSON logs; every record carries the request id of its request or task."""

from __future__ import annotations

from config.env import env_str

LOG_LEVEL = env_str("WARDEN_LOG_LEVEL", "INFO")
LOG_FORMAT = env_str("WARDEN_LOG_FORMAT", "json")  # json | console

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "apps.core.logging.RequestIdFilter"},
        # PII and credentials never reach a log line (apps/core/redaction.py).
        "redact": {"()": "apps.core.logging.RedactFilter"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "ts", "levelname": "level", "name": "logger"},
        },
        "console": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT if LOG_FORMAT in ("json", "console") else "json",
            "filters": ["request_id", "redact"],
        }
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # django-axes logs every login at INFO; lockouts (WARNING) are what operators need.
        "axes": {"level": "WARNING"},
        # httpx logs every request it sends at INFO: a line per model call, which the call's
        # `model.called` event, action-graph node and span already record.
        "httpx": {"level": "WARNING"},
    },
}
