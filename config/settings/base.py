"""What every deployed environment builds on (prod.py): the shared settings, with PostgreSQL
and Redis taken from the environment only. Without DATABASE_URL or REDIS_URL, importing this
raises ImproperlyConfigured: a deployment never falls back to anything."""

from config.settings.cache import caches
from config.settings.celery import CELERY_BROKER_URL, CELERY_RESULT_BACKEND
from config.settings.channels import channel_layers
from config.settings.common import *  # noqa: F403
from config.settings.database import databases
from config.settings.services import urls_from_environment

DATABASE_URL, REDIS_URL = urls_from_environment()
# Every setting that names a service (the same lines end dev.py and test.py).
DATABASES = databases(DATABASE_URL)
CACHES = caches(REDIS_URL)
CHANNEL_LAYERS = channel_layers(REDIS_URL)
CELERY_BROKER_URL = CELERY_BROKER_URL or REDIS_URL
CELERY_RESULT_BACKEND = CELERY_RESULT_BACKEND or REDIS_URL
