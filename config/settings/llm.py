"""Model routing and the agent loop."""

from __future__ import annotations

from config.env import env_bool, env_float, env_int, env_list

# Circuit breaker per model endpoint, shared by all workers (WARDEN_BREAKER_STORAGE).
WARDEN_BREAKER_FAIL_MAX = env_int("WARDEN_BREAKER_FAIL_MAX", 3)
WARDEN_BREAKER_RESET_SECONDS = env_float("WARDEN_BREAKER_RESET_SECONDS", 30.0)
WARDEN_MAX_MESSAGE_CHARS = env_int("WARDEN_MAX_MESSAGE_CHARS", 32_000)
WARDEN_MAX_QUEUED_TURNS = env_int("WARDEN_MAX_QUEUED_TURNS", 20)
# Backpressure across a tenant's sessions: more queued turns than this → 503 turn_backlog_full.
WARDEN_MAX_QUEUED_TURNS_PER_TENANT = env_int("WARDEN_MAX_QUEUED_TURNS_PER_TENANT", 500)
WARDEN_MAX_REPROMPTS = env_int("WARDEN_MAX_REPROMPTS", 2)
# A running turn without a heartbeat for this long is presumed orphaned (worker
# gone) and re-dispatched; the session lock keeps a live one from running twice.
WARDEN_TURN_STALE_SECONDS = env_int("WARDEN_TURN_STALE_SECONDS", 120)
WARDEN_SESSION_STATE_TTL_SECONDS = env_int("WARDEN_SESSION_STATE_TTL_SECONDS", 86_400)
# SSE: seconds between keep-alive comments while nothing happens.
WARDEN_SSE_KEEPALIVE_SECONDS = env_float("WARDEN_SSE_KEEPALIVE_SECONDS", 15.0)

# Context compression (README "Context compression"): when a turn's prompt reaches TRIGGER of
# the model's window (less the output allowance) or of the turn's input budget, every earlier
# turn but the last KEEP_TURNS is summarised by the small tier, in at most SUMMARY_TOKENS.
WARDEN_CONTEXT_COMPRESSION = env_bool("WARDEN_CONTEXT_COMPRESSION", True)
WARDEN_CONTEXT_COMPRESSION_TRIGGER = env_float("WARDEN_CONTEXT_COMPRESSION_TRIGGER", 0.8)
WARDEN_CONTEXT_KEEP_TURNS = env_int("WARDEN_CONTEXT_KEEP_TURNS", 2)
WARDEN_CONTEXT_SUMMARY_TOKENS = env_int("WARDEN_CONTEXT_SUMMARY_TOKENS", 400)

# Extra modules that register builtin tools (apps.tools.executors.builtin.default_registry).
WARDEN_TOOL_MODULES = env_list("WARDEN_TOOL_MODULES", [])
