"""Tools: MCP discovery, per-call credentials, circuit breakers, builtins."""

from __future__ import annotations

from config.env import env_float, env_int, env_list, env_str

# Signs the ephemeral credential minted for every tool call (HS256, >= 32 bytes). Empty:
# derived from DJANGO_SECRET_KEY. Tool servers that verify credentials need the same key.
WARDEN_TOOL_CREDENTIAL_KEY = env_str("WARDEN_TOOL_CREDENTIAL_KEY", "")
# Lifetime of a per-call credential; at most 300 s.
WARDEN_TOOL_CREDENTIAL_TTL_SECONDS = env_int("WARDEN_TOOL_CREDENTIAL_TTL_SECONDS", 60)
# Redis that remembers presented credential ids so each credential verifies once; empty: REDIS_URL.
# Unreachable: every credential presented back to the platform is refused (fail closed).
WARDEN_TOOL_CREDENTIAL_REPLAY_REDIS_URL = env_str("WARDEN_TOOL_CREDENTIAL_REPLAY_REDIS_URL", "")
# How long discovery may take (connect + list), per server.
WARDEN_MCP_DISCOVERY_TIMEOUT_SECONDS = env_float("WARDEN_MCP_DISCOVERY_TIMEOUT_SECONDS", 30.0)
# Command lines a stdio MCP server may run on the workers, as argv prefixes ("{python}" is the
# platform's interpreter). A server's command + args must start with one of them, so
# "{python} -m mcp_server_time" allows that module but not "python -c ...". Fail closed:
# only the packaged servers by default; "*" allows any command (single-tenant installs only).
WARDEN_MCP_STDIO_COMMANDS = env_list(
    "WARDEN_MCP_STDIO_COMMANDS",
    [
        "{python} -m mcp_server_time",
        "{python} -m mcp_server_git",
        "mcp-server-time",
        "mcp-server-git",
    ],
)
# Circuit breaker per tool server (MCP server, WASM module, builtin), per worker process.
WARDEN_TOOL_BREAKER_FAIL_MAX = env_int("WARDEN_TOOL_BREAKER_FAIL_MAX", 5)
WARDEN_TOOL_BREAKER_RESET_SECONDS = env_float("WARDEN_TOOL_BREAKER_RESET_SECONDS", 30.0)
# Cpu-bound builtins (the calculator) run in helper processes that their timeout kills: at most
# this many at once per worker process, each with its address space capped at this many MiB.
WARDEN_BUILTIN_CPU_HELPERS = env_int("WARDEN_BUILTIN_CPU_HELPERS", 2)
WARDEN_BUILTIN_CPU_MEMORY_MB = env_int("WARDEN_BUILTIN_CPU_MEMORY_MB", 512)
# Hosts the builtin `http_fetch` tool may GET from; empty: the tool is not registered.
WARDEN_HTTP_FETCH_ALLOWED_HOSTS = env_list("WARDEN_HTTP_FETCH_ALLOWED_HOSTS", [])

# Long-running tool jobs whose dispatch was lost are re-dispatched by beat.
from config.settings.celery import CELERY_BEAT_SCHEDULE as _BEAT  # noqa: E402

CELERY_BEAT_SCHEDULE = {
    **_BEAT,
    "recover-tool-jobs": {"task": "tools.recover_jobs", "schedule": 60.0},
}
