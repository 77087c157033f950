"""Where PostgreSQL and Redis are: two URLs, and how each environment finds them.

- base.py / prod.py: from the environment only (DATABASE_URL, REDIS_URL, or their `_FILE`
  variants); missing ones raise ImproperlyConfigured. Production never guesses.
- dev.py / test.py: from the environment, else from the state file of the embedded services
  that `make run` (var/services.json) or the test run (var/test/services.json) started, so
  `manage.py` works next to them; else placeholders that fail at first use (below), so
  commands that need no service work in a fresh checkout. Reading that file is all they do:
  the services are started by devtools/ (the `make run` supervisor, the pytest plugin), never
  by importing settings.

Every setting that names a service is built from the two URLs by the functions of its topic
module (database.databases, cache.caches, channels.channel_layers); each environment module
ends with the same few lines that do it.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.env import env_str

NAMES = ("DATABASE_URL", "REDIS_URL")
_WHAT = {
    "DATABASE_URL": "PostgreSQL >= 15 with pgvector, e.g. postgresql://user:password@db:5432/warden",
    "REDIS_URL": "Redis, e.g. redis://redis:6379/0",
}


def _from_environment() -> dict[str, str]:
    # Each name spelled out, so a reader (and tests/deploy's check of the names the code
    # reads) finds it.
    return {
        "DATABASE_URL": env_str("DATABASE_URL", "").strip(),
        "REDIS_URL": env_str("REDIS_URL", "").strip(),
    }


def _missing(names: list[str], hint: str) -> ImproperlyConfigured:
    wanted = "; ".join(f"{name}: {_WHAT[name]}" for name in names)
    return ImproperlyConfigured(f"{' and '.join(names)} must be set ({wanted}). {hint}")


def urls_from_environment() -> tuple[str, str]:
    """(DATABASE_URL, REDIS_URL) from the environment; ImproperlyConfigured names any missing."""
    given = _from_environment()
    database_url, redis_url = given["DATABASE_URL"], given["REDIS_URL"]
    missing = [name for name, url in zip(NAMES, (database_url, redis_url), strict=True) if not url]
    if missing:
        raise _missing(missing, "These settings take them from the environment only.")
    return database_url, redis_url


def embedded_state_urls(state_dir: Path) -> dict[str, str]:
    """The URLs in `<state_dir>/services.json` (written by devtools/embedded.py while the
    embedded services run); empty when there is no such file or it can't be read."""
    try:
        state = json.loads((state_dir / "services.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict):
        return {}
    urls = {"DATABASE_URL": state.get("database_url"), "REDIS_URL": state.get("redis_url")}
    return {name: url for name, url in urls.items() if isinstance(url, str) and url}


# What dev and test settings name while a service is neither configured nor running: a
# database backend whose first use says so (config/db_not_running), and a Redis nothing
# listens on. Commands that need no service (makemigrations, check) work; the others fail at
# first use, saying how to start the services.
NOT_RUNNING_DATABASE_URL = ""
NOT_RUNNING_REDIS_URL = "redis://127.0.0.1:1/0"  # port 1: nothing listens


def urls_from_environment_or_state(state_dir: Path) -> tuple[str, str]:
    """(DATABASE_URL, REDIS_URL): each from the environment if set there, else from the
    embedded services' state file under `state_dir`, else the NOT_RUNNING ones."""
    found = embedded_state_urls(state_dir)
    given = _from_environment()
    database_url, redis_url = (given[name] or found.get(name, "") for name in NAMES)
    return database_url or NOT_RUNNING_DATABASE_URL, redis_url or NOT_RUNNING_REDIS_URL
