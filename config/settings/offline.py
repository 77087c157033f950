"""For tools that load Django without running it: mypy's django-stubs plugin (pyproject),
`manage.py check` and `makemigrations --check` (`make check`), the benchmarks that use no
service (benchmarks/eval_local_*.py). The shared settings with no
database (Django's dummy backend: any query fails) and a Redis URL nothing connects to, so
these tools work on a machine where no service runs. Never serve with these settings."""

from config.settings.cache import caches
from config.settings.channels import channel_layers
from config.settings.common import *  # noqa: F403

SECRET_KEY = "offline-tools-only"  # noqa: S105
DATABASE_URL = ""
REDIS_URL = "redis://127.0.0.1:1/0"  # port 1: nothing listens, nothing is reached
DATABASES = {"default": {"ENGINE": "django.db.backends.dummy"}}
CACHES = caches(REDIS_URL)
CHANNEL_LAYERS = channel_layers(REDIS_URL)
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
