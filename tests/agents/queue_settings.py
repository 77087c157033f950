"""Settings of the workers that tests/agents/test_budget_workers.py starts: the test settings,
on a Celery queue of the test's own (WARDEN_TEST_QUEUE).

The suite's shared worker (the session fixture `celery_worker`) never sees these tests' turns,
and these workers' own dispatches (the next turn of a session, `agents.recover_turns`) stay on
the test's queue too. Everything else, the budget settings included, comes from the
environment as in any worker.
"""

import os

from config.settings.test import *  # noqa: F403

CELERY_TASK_DEFAULT_QUEUE = os.environ["WARDEN_TEST_QUEUE"]
