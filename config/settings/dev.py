"""Local development: `make run` and `manage.py` beside it.

Only reads: the services from DATABASE_URL / REDIS_URL, else from the state file of the
embedded ones a running `make run` started (var/services.json), else placeholders that fail
at first use (config/settings/services.py); the secret key from DJANGO_SECRET_KEY, else
var/secret_key, which `make run` (devtools/devrun.py) creates once, else one for this process.
"""

import secrets

from config.env import env_bool
from config.settings.cache import caches
from config.settings.celery import CELERY_BROKER_URL, CELERY_RESULT_BACKEND
from config.settings.channels import channel_layers
from config.settings.common import *  # noqa: F403
from config.settings.common import SECRET_KEY
from config.settings.database import databases
from config.settings.paths import VAR_DIR
from config.settings.services import urls_from_environment_or_state

DATABASE_URL, REDIS_URL = urls_from_environment_or_state(VAR_DIR)
# Every setting that names a service (the same lines end base.py and test.py).
DATABASES = databases(DATABASE_URL)
CACHES = caches(REDIS_URL)
CHANNEL_LAYERS = channel_layers(REDIS_URL)
CELERY_BROKER_URL = CELERY_BROKER_URL or REDIS_URL
CELERY_RESULT_BACKEND = CELERY_RESULT_BACKEND or REDIS_URL

# Off unless asked for (DJANGO_DEBUG=true): `make run` may be reachable from other machines,
# and Django's debug pages show settings (database and Redis URLs) and every URL pattern.
# Static files do not depend on it: WhiteNoise serves them from the apps (below).
DEBUG = env_bool("DJANGO_DEBUG", False)
if not SECRET_KEY:
    # A per-checkout key (`make run` creates it once), so sessions survive its restarts; a
    # `manage.py` command in a checkout that never ran it gets one for this process only.
    try:
        SECRET_KEY = (VAR_DIR / "secret_key").read_text().strip()
    except OSError:
        SECRET_KEY = secrets.token_urlsafe(50)

# Static files straight from the apps, no collectstatic needed in development.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
STATIC_ROOT = None  # served from the apps; `collectstatic` is for production images
