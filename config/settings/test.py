"""Tests: real PostgreSQL and Redis. Without DATABASE_URL/REDIS_URL the embedded
services under var/test/ are started once and reused by later runs."""

import os

from config.settings.paths import VAR_DIR

if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
    from config.embedded import services_start

    _state = services_start(
        VAR_DIR / "test",
        database="warden",
        need_db=not os.environ.get("DATABASE_URL"),
        need_redis=not os.environ.get("REDIS_URL"),
        reuse=True,
    )
    # Exported so subprocesses the tests start (Celery workers) use the same services.
    if _state.database_url:
        os.environ["DATABASE_URL"] = _state.database_url
    if _state.redis_url:
        os.environ["REDIS_URL"] = _state.redis_url

from config.settings.base import *  # noqa: F403

SECRET_KEY = "test-secret-key-not-for-production"  # noqa: S105
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # noqa: F405
WARDEN_TOOL_MODULES = ["tests.agents.tools"]
# The tests' own stdio MCP servers (python scripts under tests/), next to the packaged ones.
_TESTS = BASE_DIR / "tests"  # noqa: F405
WARDEN_TOOL_WORKSPACE_ROOT = str(VAR_DIR / "test" / "workspaces")
WARDEN_MCP_STDIO_TEMPLATES = {
    **WARDEN_MCP_STDIO_TEMPLATES,  # noqa: F405
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
CACHES["default"]["KEY_PREFIX"] = "warden-test"  # noqa: F405
