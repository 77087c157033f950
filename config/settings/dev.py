"""Local development: `make run` and `manage.py` beside it.

Only reads: the services from DATABASE_URL / REDIS_URL, else from the state file of the
embedded ones a running `make run` started (var/services.json); the secret key from
DJANGO_SECRET_KEY, else var/secret_key, which `make run` (devtools/devrun.py) creates once.
"""

from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool
from config.settings.cache import caches
from config.settings.celery import CELERY_BROKER_URL, CELERY_RESULT_BACKEND
from config.settings.channels import channel_layers
from config.settings.common import *  # noqa: F403
from config.settings.common import SECRET_KEY
from config.settings.database import databases
from config.settings.paths import VAR_DIR
from config.settings.services import urls_from_environment_or_state

DATABASE_URL, REDIS_URL = urls_from_environment_or_state(
    VAR_DIR, hint="Start them with `make run` (manage.py then works beside it), or set the URLs."
)
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
    # A per-checkout key, so sessions survive restarts of `make run`.
    try:
        SECRET_KEY = (VAR_DIR / "secret_key").read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY is not set and {VAR_DIR / 'secret_key'} cannot be read ({exc}). "
            "`make run` creates that file on its first start; or set DJANGO_SECRET_KEY."
        ) from exc

# Static files straight from the apps, no collectstatic needed in development.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
STATIC_ROOT = None  # served from the apps; `collectstatic` is for production images
