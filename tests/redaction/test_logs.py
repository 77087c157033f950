"""Log lines are redacted by a filter on the project's handler: the message with its
arguments, the exception text and `extra=` values, in the JSON the handler writes; and in a
Celery worker, whose own handlers replace the project's."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from apps.core.logging import RedactFilter
from tests.conftest import ROOT

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
KEY = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


@pytest.fixture
def project_log() -> Iterator[io.StringIO]:
    """What the project's own stderr handler (settings.LOGGING) writes, captured."""
    handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler)
        and any(isinstance(f, RedactFilter) for f in h.filters)
    ]
    assert handlers, "the LOGGING handler has no RedactFilter"
    handler = handlers[0]
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def test_messages_arguments_extras_and_tracebacks_are_redacted(project_log: io.StringIO) -> None:
    logger = logging.getLogger("warden.test.redaction")
    logger.warning("login failed for %s with card %s", EMAIL, CARD, extra={"token": JWT})
    try:
        raise ValueError(f"provider refused key {KEY}")
    except ValueError:
        logger.exception("call failed", extra={"headers": {"Authorization": f"Bearer {KEY}"}})
    logger.info("order 4111 1111 1111 1112 shipped")  # not a card (Luhn): kept

    lines = [json.loads(line) for line in project_log.getvalue().splitlines()]
    text = project_log.getvalue()
    for raw in (EMAIL, CARD, KEY, JWT):
        assert raw not in text, raw
    first, second, third = lines
    assert first["message"] == "login failed for [REDACTED:email] with card [REDACTED:card]"
    assert first["token"] == "[REDACTED:jwt]"
    assert second["message"] == "call failed"
    assert "ValueError: provider refused key [REDACTED:api_key]" in second["exc_info"]
    assert second["headers"] == {"Authorization": "[REDACTED:bearer_token]"}
    assert third["message"] == "order 4111 1111 1111 1112 shipped"


WORKER_LOGGING = """
import logging
import django

django.setup()
from config.celery import app

app.log.setup_logging_subsystem(loglevel="INFO")  # as `celery worker` does: root hijacked
logging.getLogger("warden.agents").warning("turn failed for %s", "jane.doe@example.com")
logging.getLogger("celery.task").warning("card 4111 1111 1111 1111 declined")
"""


def test_a_workers_own_log_handlers_redact_too() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.offline"}
    done = subprocess.run(
        [sys.executable, "-c", WORKER_LOGGING],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "turn failed for [REDACTED:email]" in done.stderr
    assert "card [REDACTED:card] declined" in done.stderr
    assert EMAIL not in done.stderr and CARD not in done.stderr
