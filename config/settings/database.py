"""Database and Redis locations.

`DATABASE_URL` / `REDIS_URL` point at real services. Without them the embedded
services started by `make run` (state in var/services.json) are used, so
`manage.py` works next to a running `make run`.
"""

from __future__ import annotations

import dj_database_url

from config.embedded import ServiceState
from config.env import env_int, env_str
from config.settings.paths import VAR_DIR


def _embedded_state() -> ServiceState | None:
    return ServiceState.load(VAR_DIR)


_state = _embedded_state()
DATABASE_URL = env_str("DATABASE_URL", "") or (_state.database_url if _state else "") or ""
REDIS_URL = env_str("REDIS_URL", "") or (_state.redis_url if _state else "") or ""

if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0), conn_health_checks=True
        )
    }
else:  # nothing configured: the first query fails (set DATABASE_URL, or run `make run`)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "warden-not-configured",
            "HOST": "127.0.0.1",
            "PORT": "1",
        }
    }

if not REDIS_URL:
    REDIS_URL = "redis://127.0.0.1:6379/0"
