from __future__ import annotations

import pytest

from apps.core.context import request_id_var
from apps.core.tasks import ping
from tests.conftest import WorkerProcess


@pytest.mark.worker
def test_round_trip_through_redis_and_a_real_worker_carries_the_request_id(
    celery_worker: WorkerProcess,
) -> None:
    token = request_id_var.set("req-roundtrip-42")
    try:
        result = ping.delay({"n": 7})
    finally:
        request_id_var.reset(token)
    reply = result.get(timeout=30)
    assert reply["pong"] is True
    assert reply["payload"] == {"n": 7}
    # Produced in the worker process, so it proves the header crossed the broker.
    assert reply["request_id"] == "req-roundtrip-42"
