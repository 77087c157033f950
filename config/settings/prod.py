"""Production: everything comes from the environment; missing secrets or services are fatal
(ImproperlyConfigured at import, before anything serves)."""

from config.env import ConfigError, env_bool, env_int
from config.settings.base import *  # noqa: F403

if not SECRET_KEY:  # noqa: F405
    raise ConfigError("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must be set in production")

DEBUG = False
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# TLS usually ends at the load balancer; turn these on when this process sees HTTPS.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0)
# Without WARDEN_METRICS_TOKEN, production /metrics answers nobody (not even loopback:
# behind a proxy on the same host, loopback is everyone).
WARDEN_METRICS_ALLOW_LOOPBACK = env_bool("WARDEN_METRICS_ALLOW_LOOPBACK", False)
