"""The database of dev and test settings while no PostgreSQL is configured or running.

`manage.py makemigrations`, `check`, `shell` and the like load settings without needing a
database; `make run` or the pytest plugin starts one. So dev and test settings load without
one, and the first use of the database raises OperationalError saying how to get one (Django's
own dummy backend would only say "supply the ENGINE value"). OperationalError, not
ImproperlyConfigured: it is what a database that is down raises, and commands that may run
without one (makemigrations' history check) already treat it as such.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.db.backends.dummy import base as dummy
from django.db.utils import OperationalError

MESSAGE = (
    "No database: DATABASE_URL is not set and no embedded PostgreSQL is running. Start them "
    "with `make run` (manage.py then works beside it), run the tests with pytest, or set "
    "DATABASE_URL and REDIS_URL."
)


def _not_running(*args: Any, **kwargs: Any) -> NoReturn:
    raise OperationalError(MESSAGE)


class DatabaseWrapper(dummy.DatabaseWrapper):
    _cursor = _not_running
    ensure_connection = _not_running
    _commit = _not_running
    _savepoint_commit = _not_running
    _set_autocommit = _not_running
