"""Tools: MCP discovery, per-call credentials, circuit breakers, builtins."""

from __future__ import annotations

from config.env import env_float, env_int, env_json, env_list, env_str
from config.settings.paths import VAR_DIR

# Signs the ephemeral credential minted for every tool call (HS256, >= 32 bytes). Empty:
# derived from DJANGO_SECRET_KEY. Tool servers that verify credentials need the same key.
WARDEN_TOOL_CREDENTIAL_KEY = env_str("WARDEN_TOOL_CREDENTIAL_KEY", "")
# Lifetime of a per-call credential; at most 300 s.
WARDEN_TOOL_CREDENTIAL_TTL_SECONDS = env_int("WARDEN_TOOL_CREDENTIAL_TTL_SECONDS", 60)
# Redis that remembers presented credential ids so each credential verifies once; empty: REDIS_URL.
# Unreachable: every credential presented back to the platform is refused (fail closed).
WARDEN_TOOL_CREDENTIAL_REPLAY_REDIS_URL = env_str("WARDEN_TOOL_CREDENTIAL_REPLAY_REDIS_URL", "")
# How long discovery may take (connect + list), per server. A web request waits for the worker
# doing it this long plus a few seconds, then answers 503 `discovery_unavailable`.
WARDEN_MCP_DISCOVERY_TIMEOUT_SECONDS = env_float("WARDEN_MCP_DISCOVERY_TIMEOUT_SECONDS", 30.0)
# stdio MCP servers a tenant may run: templates the platform operator defines (a dict here, or
# JSON in the environment). Each fixes the command ("{python}" = the workers' interpreter,
# "{workspace}" = the tenant's workspace) and declares the arguments and env variables a tenant
# may set, with validators. See apps/tools/stdio.py for the format. Interpreter, loader and
# shell variables can never be declared: such a template is refused (`manage.py check`).
WARDEN_MCP_STDIO_TEMPLATES = env_json(
    "WARDEN_MCP_STDIO_TEMPLATES",
    {
        "time": {
            "description": "Current time and time-zone conversion (mcp-server-time).",
            "command": ["{python}", "-I", "-m", "mcp_server_time"],
            "args": {
                "--local-timezone": {
                    "type": "regex",
                    "pattern": r"[A-Za-z]+(?:[/_+-][A-Za-z0-9]+)*",
                    "description": "IANA time zone, e.g. Europe/Paris",
                }
            },
        },
        "git": {
            "description": "Git on a repository in the tenant's workspace (mcp-server-git).",
            "command": ["{python}", "-I", "-m", "mcp_server_git"],
            "args": {
                "--repository": {
                    "type": "workspace_path",
                    "required": True,
                    "must_contain": ".git",
                    "description": "A git working tree inside the tenant's workspace",
                }
            },
        },
    },
)
# Per-tenant directories (<root>/<tenant id>, 0700) that stdio servers run in (cwd and HOME);
# repositories a tenant's git server may read live here. Web and workers must see the same one.
WARDEN_TOOL_WORKSPACE_ROOT = env_str("WARDEN_TOOL_WORKSPACE_ROOT", str(VAR_DIR / "workspaces"))
# Celery queue discovery is sent to (empty: the default queue). Give stdio servers their own,
# more isolated workers by pointing this at a queue only those workers consume.
WARDEN_MCP_DISCOVERY_QUEUE = env_str("WARDEN_MCP_DISCOVERY_QUEUE", "")
# Circuit breaker per tenant and tool server (MCP server, WASM module, builtin), shared by all
# workers (WARDEN_BREAKER_STORAGE).
WARDEN_TOOL_BREAKER_FAIL_MAX = env_int("WARDEN_TOOL_BREAKER_FAIL_MAX", 5)
WARDEN_TOOL_BREAKER_RESET_SECONDS = env_float("WARDEN_TOOL_BREAKER_RESET_SECONDS", 30.0)
# Cpu-bound builtins (the calculator) run in helper processes that their timeout kills: at most
# this many at once per worker process, each with its address space capped at this many MiB.
WARDEN_BUILTIN_CPU_HELPERS = env_int("WARDEN_BUILTIN_CPU_HELPERS", 2)
WARDEN_BUILTIN_CPU_MEMORY_MB = env_int("WARDEN_BUILTIN_CPU_MEMORY_MB", 512)
# Hosts the builtin `http_fetch` tool may GET from; empty: the tool is not registered.
WARDEN_HTTP_FETCH_ALLOWED_HOSTS = env_list("WARDEN_HTTP_FETCH_ALLOWED_HOSTS", [])
