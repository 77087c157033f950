"""Tests: real PostgreSQL and Redis, from DATABASE_URL / REDIS_URL.

pytest sets them: its plugin devtools/pytest_services.py (`-p` in pyproject's addopts) starts
the embedded services under var/test/ (or keeps yours when the URLs are set) before Django
loads these settings, and exports the URLs, so the workers and daphne the tests start find
them too. Outside pytest these settings read var/test/services.json while those services run.
"""

from config.settings.cache import caches
from config.settings.celery import CELERY_BROKER_URL, CELERY_RESULT_BACKEND
from config.settings.channels import channel_layers
from config.settings.common import *  # noqa: F403
from config.settings.database import databases
from config.settings.paths import BASE_DIR, VAR_DIR
from config.settings.services import urls_from_environment_or_state
from config.settings.tools import WARDEN_MCP_STDIO_TEMPLATES as _TEMPLATES

DATABASE_URL, REDIS_URL = urls_from_environment_or_state(VAR_DIR / "test")
# Every setting that names a service (the same lines end base.py and dev.py).
DATABASES = databases(DATABASE_URL)
CACHES = caches(REDIS_URL)
CHANNEL_LAYERS = channel_layers(REDIS_URL)
CELERY_BROKER_URL = CELERY_BROKER_URL or REDIS_URL
CELERY_RESULT_BACKEND = CELERY_RESULT_BACKEND or REDIS_URL

SECRET_KEY = "test-secret-key-not-for-production"  # noqa: S105
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # noqa: F405
WARDEN_TOOL_MODULES = ["tests.agents.tools"]
# The tests' own stdio MCP servers (python scripts under tests/), next to the packaged ones.
_TESTS = BASE_DIR / "tests"
WARDEN_TOOL_WORKSPACE_ROOT = str(VAR_DIR / "test" / "workspaces")
WARDEN_MCP_STDIO_TEMPLATES = {
    **_TEMPLATES,
    # Lists the tools named in a JSON file in the tenant's workspace.
    "catalog": {
        "command": ["{python}", "-I", str(_TESTS / "tools_django/servers/catalog_server.py")],
        "args": {"spec": {"type": "workspace_path", "required": True}},
    },
    # Lists a malformed tool set.
    "malformed": {
        "command": ["{python}", "-I", str(_TESTS / "tools/servers/malformed_server.py")],
        "args": {"mode": {"type": "choices", "choices": ["bad_schema", "duplicate"]}},
    },
    # The time server, with a secret variable (auth_env) it ignores.
    "secured-time": {
        "command": ["{python}", "-I", "-m", "mcp_server_time"],
        "env": {"TIME_TOKEN": {"type": "secret"}},
    },
    # A command that does not exist: connecting fails.
    "broken": {"command": ["/nonexistent/mcp-server"]},
    # Reports its own process (pid, parent, cwd, environment) in its tool's description.
    "envdump": {
        "command": ["{python}", "-I", str(_TESTS / "security/servers/env_server.py")],
        "env": {
            "GREETING": {"type": "regex", "pattern": "[a-z ]{1,40}"},
            "DUMP_TOKEN": {"type": "secret"},
        },
    },
}
# The tests' MCP and model servers listen on loopback; tests/security/ narrows this again.
WARDEN_EGRESS_ALLOW = ["127.0.0.0/8", "::1", "localhost"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
STATIC_ROOT = None  # served from the apps (finders); nothing is collected in tests
# The suite makes many requests from 127.0.0.1; throttle tests override these with small rates.
WARDEN_API_RATE_PER_PRINCIPAL = "100000/minute"
WARDEN_API_RATE_PER_ADDRESS = "100000/minute"
WARDEN_API_AUTH_FAILURE_RATE = "100000/minute"
CACHES["default"]["KEY_PREFIX"] = "warden-test"
# Budgets: the suite's own Redis keys; no rate limits, no config cache (tests change budgets
# and see the next turn obey) and backpressure far away, unless a test overrides them.
WARDEN_BUDGET_REDIS_PREFIX = "warden-test:budget"
WARDEN_BUDGET_CONFIG_CACHE_SECONDS = 0.0
WARDEN_MODEL_RPM_PER_TENANT = 0
WARDEN_MODEL_TPM_PER_TENANT = 0
WARDEN_MODEL_RPM_PER_USER = 0
WARDEN_MODEL_TPM_PER_USER = 0
WARDEN_BACKPRESSURE_DEGRADE_DEPTH = 100_000
WARDEN_BACKPRESSURE_DEGRADE_AGE_SECONDS = 86_400.0
WARDEN_BACKPRESSURE_REFUSE_DEPTH = 1_000_000
WARDEN_BACKPRESSURE_REFUSE_AGE_SECONDS = 864_000.0
WARDEN_BACKPRESSURE_CACHE_SECONDS = 0.0
# Memory: the deterministic hash embedder (fast, no model); tests/memory picks the real local
# model or an OpenAI-compatible server where it means to.
WARDEN_MEMORY_EMBEDDER = "hash"
