"""Circuit breakers for model endpoints and tool servers: where their state lives.

Thresholds are per topic: WARDEN_BREAKER_* (llm.py) for model endpoints, WARDEN_TOOL_BREAKER_*
(tools.py) for tool servers.
"""

from __future__ import annotations

from config.env import env_float, env_str

# "redis": every worker process (on every machine using the same Redis) shares each breaker,
# so an endpoint found down by one is skipped by all. "memory": each process learns alone.
WARDEN_BREAKER_STORAGE = env_str("WARDEN_BREAKER_STORAGE", "redis")
# Empty: REDIS_URL.
WARDEN_BREAKER_REDIS_URL = env_str("WARDEN_BREAKER_REDIS_URL", "")
WARDEN_BREAKER_KEY_PREFIX = env_str("WARDEN_BREAKER_KEY_PREFIX", "warden:breaker")
# Socket timeout for breaker reads and writes (each call of a model or tool makes ~2): a Redis
# that hangs costs at most this much before the process falls back to its own breakers.
WARDEN_BREAKER_REDIS_TIMEOUT_SECONDS = env_float("WARDEN_BREAKER_REDIS_TIMEOUT_SECONDS", 0.5)
# While Redis is unreachable, try it again after this long (per process).
WARDEN_BREAKER_REDIS_RETRY_SECONDS = env_float("WARDEN_BREAKER_REDIS_RETRY_SECONDS", 5.0)
