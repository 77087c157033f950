"""Celery: Redis broker and result backend."""

from __future__ import annotations

from config.env import env_bool, env_int, env_str
from config.settings.database import WARDEN_WORKER_TURNS
from config.settings.paths import VAR_DIR

# Empty: REDIS_URL (filled in with the other service settings, services.py).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "")
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
# A turn must survive a worker killed mid-task: ack only after the task ran and
# requeue when the worker process dies (the task itself resumes from checkpoints).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# A worker process keeps many turns in flight: a turn spends nearly all its time waiting on a
# model or a tool, and a waiting thread costs a stack and a pooled connection, not a process.
# Threads, not gevent or eventlet: the ORM, psycopg, the openai/anthropic SDKs and the MCP
# client are synchronous and thread-safe, and nothing needs monkey-patching. CPU-bound tools
# already run in helper processes (apps/tools/executors/cpu.py), so the GIL is only held
# for the platform's own bookkeeping. WARDEN_WORKER_TURNS sets how many (default 32);
# CELERY_WORKER_POOL=prefork brings back one turn per process.
CELERY_WORKER_POOL = env_str("CELERY_WORKER_POOL", "threads")
CELERY_WORKER_CONCURRENCY = WARDEN_WORKER_TURNS
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis redelivers unacked messages after the visibility timeout; turns are
# bounded well below this.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
}

# Celery's default scheduler plus a heartbeat file after every tick, which beat's liveness
# probe reads (`python -m config.heartbeat beat`).
CELERY_BEAT_SCHEDULER = "config.heartbeat:HeartbeatScheduler"
# Tick at least this often whatever the schedule holds, so a live beat's heartbeat is never
# older than this (the probe allows 60 s).
CELERY_BEAT_MAX_LOOP_INTERVAL = 30

# Where beat remembers when each periodic task last ran (`celery beat` writes it; the
# production image runs as a non-root user that may only write under WARDEN_VAR_DIR).
CELERY_BEAT_SCHEDULE_FILENAME = env_str(
    "CELERY_BEAT_SCHEDULE_FILENAME", str(VAR_DIR / "celerybeat-schedule")
)

CELERY_BEAT_SCHEDULE = {
    "recover-turns": {"task": "agents.recover_turns", "schedule": 30.0},
    # Long-running tool jobs whose dispatch was lost (apps/agents/jobs.py; the task kept the
    # name it had in apps.tools).
    "recover-tool-jobs": {"task": "tools.recover_jobs", "schedule": 60.0},
    # Pending approval requests past their expiry: marked expired, their turns resumed with a
    # rejection (apps/approvals/services.py).
    "expire-approvals": {"task": "approvals.expire", "schedule": 60.0},
    # Budget holds past their deadline (a worker died between reserve and settle): charged
    # at the hold and released from Redis (apps/budgets/services/ledger.py).
    "reconcile-budgets": {"task": "budgets.reconcile", "schedule": 30.0},
}
