"""Celery: Redis broker and result backend."""

from __future__ import annotations

from config.env import env_bool, env_int, env_str
from config.settings.database import REDIS_URL

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "") or REDIS_URL
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or REDIS_URL
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
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 2)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis redelivers unacked messages after the visibility timeout; turns are
# bounded well below this.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
}
CELERY_READY_PING_TIMEOUT = env_int("WARDEN_READY_PING_TIMEOUT_MS", 1000) / 1000

CELERY_BEAT_SCHEDULE = {
    "recover-turns": {"task": "agents.recover_turns", "schedule": 30.0},
}
