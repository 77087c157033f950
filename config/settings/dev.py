"""Local development (`make run`)."""

from config.env import env_bool
from config.settings.base import *  # noqa: F403
from config.settings.base import SECRET_KEY
from config.settings.paths import VAR_DIR

# Off unless asked for (DJANGO_DEBUG=true): `make run` may be reachable from other machines,
# and Django's debug pages show settings (database and Redis URLs) and every URL pattern.
# Static files do not depend on it: WhiteNoise serves them from the apps (below).
DEBUG = env_bool("DJANGO_DEBUG", False)
if not SECRET_KEY:
    # A per-checkout key, created once, so sessions survive restarts of `make run`.
    _key_file = VAR_DIR / "secret_key"
    if not _key_file.exists():
        import secrets

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        _key_file.write_text(secrets.token_urlsafe(50))
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()

# Static files straight from the apps, no collectstatic needed in development.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
STATIC_ROOT = None  # served from the apps; `collectstatic` is for production images
