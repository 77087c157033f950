"""Budgets, model rate limits, admission and backpressure (apps/budgets, README "Budgets")."""

from __future__ import annotations

from config.env import env_float, env_int, env_str

# Where reservations, counters and rate windows live in Redis (REDIS_URL). Deployments sharing
# a Redis need different prefixes. Redis must run with `maxmemory-policy noeviction`.
WARDEN_BUDGET_REDIS_PREFIX = env_str("WARDEN_BUDGET_REDIS_PREFIX", "warden:budget")
# The currency of tenants that set none (ISO 4217); model prices and caps are in it.
WARDEN_BUDGET_DEFAULT_CURRENCY = env_str("WARDEN_BUDGET_DEFAULT_CURRENCY", "USD")
# A reservation is released-by-charging (reconciled) this long after the latest moment its call
# could still be running (the sum of its candidate endpoints' timeouts).
WARDEN_BUDGET_RESERVATION_GRACE_SECONDS = env_int("WARDEN_BUDGET_RESERVATION_GRACE_SECONDS", 30)
# How many expired reservations one reconcile run (beat `budgets.reconcile`, every 30 s) takes.
WARDEN_BUDGET_RECONCILE_BATCH = env_int("WARDEN_BUDGET_RECONCILE_BATCH", 500)
# Budgets and tenant limits are cached per process this long: an edit reaches new turns (and
# admission) within it, never a turn mid-run.
WARDEN_BUDGET_CONFIG_CACHE_SECONDS = env_float("WARDEN_BUDGET_CONFIG_CACHE_SECONDS", 5.0)
# Obligations at 80 %: how many not-yet-used tools `trim_tools` keeps, how long an observation
# stays under `compress_context`, and how many earlier turns a turn starting under it sees.
WARDEN_BUDGET_TRIM_TOOLS = env_int("WARDEN_BUDGET_TRIM_TOOLS", 5)
WARDEN_BUDGET_COMPRESSED_OBSERVATION_CHARS = env_int(
    "WARDEN_BUDGET_COMPRESSED_OBSERVATION_CHARS", 1000
)
WARDEN_BUDGET_KEEP_HISTORY_TURNS = env_int("WARDEN_BUDGET_KEEP_HISTORY_TURNS", 2)

# Model requests (rpm) and tokens (tpm) per minute, per tenant and per user, unless a tenant's
# budget settings say otherwise. 0: no limit (the default: provider quotas vary too much to
# guess one).
WARDEN_MODEL_RPM_PER_TENANT = env_int("WARDEN_MODEL_RPM_PER_TENANT", 0)
WARDEN_MODEL_TPM_PER_TENANT = env_int("WARDEN_MODEL_TPM_PER_TENANT", 0)
WARDEN_MODEL_RPM_PER_USER = env_int("WARDEN_MODEL_RPM_PER_USER", 0)
WARDEN_MODEL_TPM_PER_USER = env_int("WARDEN_MODEL_TPM_PER_USER", 0)
# How long a running turn waits for a full window before it fails `rate_limited`.
WARDEN_MODEL_RATE_MAX_WAIT_SECONDS = env_float("WARDEN_MODEL_RATE_MAX_WAIT_SECONDS", 20.0)

# Backpressure, from the queue of turns waiting for a worker: past the degrade thresholds new
# turns run degraded (small tier, fewer tools); past the refuse thresholds they get 503.
WARDEN_BACKPRESSURE_DEGRADE_DEPTH = env_int("WARDEN_BACKPRESSURE_DEGRADE_DEPTH", 200)
WARDEN_BACKPRESSURE_DEGRADE_AGE_SECONDS = env_float("WARDEN_BACKPRESSURE_DEGRADE_AGE_SECONDS", 30.0)
WARDEN_BACKPRESSURE_REFUSE_DEPTH = env_int("WARDEN_BACKPRESSURE_REFUSE_DEPTH", 1000)
WARDEN_BACKPRESSURE_REFUSE_AGE_SECONDS = env_float("WARDEN_BACKPRESSURE_REFUSE_AGE_SECONDS", 120.0)
WARDEN_BACKPRESSURE_RETRY_AFTER_SECONDS = env_int("WARDEN_BACKPRESSURE_RETRY_AFTER_SECONDS", 10)
# The queue is measured at most this often per process.
WARDEN_BACKPRESSURE_CACHE_SECONDS = env_float("WARDEN_BACKPRESSURE_CACHE_SECONDS", 1.0)
