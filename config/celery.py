"""The Celery application. Workers: `celery -A config worker`."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

app = Celery("warden")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Request ids travel from the web request into every task it enqueues.
import apps.core.celery_signals  # noqa: E402,F401

# The worker's liveness probe (`python -m config.heartbeat worker`) reads this step's file.
# By name: the probe runs that module as __main__, which must not be imported before.
app.steps["worker"].add("config.heartbeat:WorkerHeartbeat")


@worker_init.connect
def _allow_stdio_servers(**_: Any) -> None:
    # Workers are where tenant work runs: discovery and tool calls may start stdio MCP servers
    # here (and in the pool processes forked from this one), never in a web process. Imported
    # here, not at the top: every process imports this module, only workers need the MCP SDK.
    from apps.tools.executors.mcp_pool import allow_stdio_servers

    allow_stdio_servers("celery worker")


@worker_process_init.connect
def _telemetry_in_pool_process(**_: Any) -> None:
    # A prefork pool process: set up already in the parent (CoreConfig.ready) and inherited;
    # this makes sure of it in any process the pool starts (the threads pool starts none).
    from apps.core.instrumentation import instrumentation_setup

    instrumentation_setup()


@worker_ready.connect
def _warm_policy_engine(**_: Any) -> None:
    # The first tool call's decision should not wait for a policy helper to start.
    from apps.policies.adapters import policy_engine_warm

    policy_engine_warm()


@worker_ready.connect
def _recover_turns_now(sender: Any = None, **_: Any) -> None:
    # A worker that starts may be the one that was killed: its turns are "running" with
    # nobody holding their session locks. Recover them now rather than at beat's next sweep.
    # (Safe when they belong to a live worker: a locked session is left alone.)
    app.send_task("agents.recover_turns")
