"""Who may reach what, and how often: trusted proxies, API throttles, console
login lockout (django-axes) and the /metrics endpoint."""

from __future__ import annotations

from datetime import timedelta

from config.env import env_bool, env_int, env_list, env_str

# Reverse proxies (addresses or CIDRs) whose X-Forwarded-For is believed, read from the
# right. Empty: the client address is REMOTE_ADDR and X-Forwarded-For is ignored.
WARDEN_TRUSTED_PROXIES = env_list("WARDEN_TRUSTED_PROXIES", [])

# API throttles ("<n>/<second|minute|hour|day>"), counted in the Redis cache. Per
# authenticated principal (API key, or user for sessions and JWTs) and per client address.
WARDEN_API_RATE_PER_PRINCIPAL = env_str("WARDEN_API_RATE_PER_PRINCIPAL", "600/minute")
WARDEN_API_RATE_PER_ADDRESS = env_str("WARDEN_API_RATE_PER_ADDRESS", "1200/minute")
# Failed bearer authentications (bad API keys or JWTs) an address may make; past it,
# every bearer credential from that address is refused with 429 until the window ends,
# before any lookup, so guessing keys gives no answers at all.
WARDEN_API_AUTH_FAILURE_RATE = env_str("WARDEN_API_AUTH_FAILURE_RATE", "30/minute")

# Console login lockout (django-axes): per username + client address.
AXES_ENABLED = env_bool("WARDEN_LOGIN_LOCKOUT_ENABLED", True)
AXES_FAILURE_LIMIT = env_int("WARDEN_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("WARDEN_LOGIN_COOLOFF_SECONDS", 900))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "apps.core.client_ip.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
# Successful logins are not recorded: sessions and the request log already say who came in.
AXES_DISABLE_ACCESS_LOG = True

# /metrics: with a token, only `Authorization: Bearer <token>` gets in. Without one, only
# loopback clients, and only where WARDEN_METRICS_ALLOW_LOOPBACK holds (development and
# tests; prod.py turns it off, so an unconfigured production /metrics answers nobody).
WARDEN_METRICS_TOKEN = env_str("WARDEN_METRICS_TOKEN", "")
WARDEN_METRICS_ALLOW_LOOPBACK = env_bool("WARDEN_METRICS_ALLOW_LOOPBACK", True)
