"""pytest plugin: PostgreSQL and Redis for the test run, before Django loads its settings.

Registered with `-p devtools.pytest_services` in pyproject's addopts (a conftest.py would be
too late: pytest-django loads the settings in its own `pytest_load_initial_conftests`, before
any conftest is imported). Our hook runs first (tryfirst) and:

- keeps DATABASE_URL / REDIS_URL when they are set (CI with real services, your own);
- otherwise starts the embedded services under var/test/ (devtools/embedded.py), or reuses
  the ones an earlier run left running (~2 s saved per run; `make stop` stops them), and puts
  their URLs in os.environ, so config/settings/test.py finds them and so does every process
  the tests start (Celery workers, daphne), which inherit the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devtools.embedded import EmbeddedServiceError, services_start

ROOT = Path(__file__).resolve().parent.parent


def services_dir() -> Path:
    """Where the tests' embedded services live: var/test/ (under WARDEN_VAR_DIR if set), the
    directory whose services.json config/settings/test.py reads."""
    return Path(os.environ.get("WARDEN_VAR_DIR") or ROOT / "var") / "test"


def ensure_services() -> None:
    """Start (or reuse) what DATABASE_URL / REDIS_URL don't name, and export its URLs."""
    need_db = not os.environ.get("DATABASE_URL")
    need_redis = not os.environ.get("REDIS_URL")
    if not (need_db or need_redis):
        return
    state = services_start(
        services_dir(), database="warden", need_db=need_db, need_redis=need_redis, reuse=True
    )
    if need_db and state.database_url:
        os.environ["DATABASE_URL"] = state.database_url
    if need_redis and state.redis_url:
        os.environ["REDIS_URL"] = state.redis_url


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # `--help` and `--version` run no test: start nothing for them.
    options = early_config.known_args_namespace
    if getattr(options, "help", False) or getattr(options, "version", False):
        return
    try:
        ensure_services()
    except EmbeddedServiceError as exc:
        raise pytest.UsageError(f"the tests' embedded services did not start: {exc}") from exc
