"""Settings shared by every environment, except where PostgreSQL and Redis are.

Topic modules are star-imported at the end of this file so that the environments only state
what differs. Which database and Redis to use is each environment's business: base.py (and
prod.py) take them from the environment only, dev.py and test.py may also find the embedded
ones `make run` or the test run started; config/settings/services.py turns the two URLs into
the settings that name them. Importing any of these modules reads the environment (and, for
dev/test, a state file) and nothing else: it starts nothing and writes nothing."""

from __future__ import annotations

from pathlib import Path

from config.env import env_bool, env_int, env_list, env_str
from config.settings.paths import BASE_DIR, VAR_DIR

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    # The console's theme: before django.contrib.admin, so its templates win and its
    # AppConfig swaps in its admin site before the admin autodiscovers.
    "unfold",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "axes",
    "apps.core",
    "apps.tenants",
    "apps.llm",
    "apps.memory",
    "apps.agents",
    "apps.tools",
    "apps.policies",
    "apps.approvals",
    "apps.budgets",
    "apps.chat",
    "apps.console",
]

MIDDLEWARE = [
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.middleware.ApiNotFoundMiddleware",
    "apps.core.middleware.ApiBodySizeMiddleware",
    "apps.core.middleware.ApiQueryCharactersMiddleware",
    "apps.core.middleware.DataErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the console's static files from daphne too (no separate web server needed);
    # in dev and tests straight from the apps (WHITENOISE_USE_FINDERS, whatever DEBUG says),
    # in production from collectstatic's STATIC_ROOT.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a locked-out console login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

# django-axes first: it refuses a locked-out username+address before a password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT: Path | None = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Request bodies above this size are refused with 413 before they are read.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("WARDEN_MAX_BODY_BYTES", 1_048_576)

LOGIN_URL = "/admin/login/"  # the chat has its own (/chat/login/)

from config.settings.access import *  # noqa: E402,F403
from config.settings.api import *  # noqa: E402,F403
from config.settings.approvals import *  # noqa: E402,F403
from config.settings.auth import *  # noqa: E402,F403
from config.settings.breakers import *  # noqa: E402,F403
from config.settings.budgets import *  # noqa: E402,F403
from config.settings.cache import *  # noqa: E402,F403
from config.settings.celery import *  # noqa: E402,F403
from config.settings.channels import *  # noqa: E402,F403
from config.settings.console import *  # noqa: E402,F403
from config.settings.database import *  # noqa: E402,F403
from config.settings.egress import *  # noqa: E402,F403
from config.settings.llm import *  # noqa: E402,F403
from config.settings.logging import *  # noqa: E402,F403
from config.settings.memory import *  # noqa: E402,F403
from config.settings.policies import *  # noqa: E402,F403
from config.settings.replay import *  # noqa: E402,F403
from config.settings.security import *  # noqa: E402,F403
from config.settings.slack import *  # noqa: E402,F403
from config.settings.telemetry import *  # noqa: E402,F403
from config.settings.tools import *  # noqa: E402,F403
