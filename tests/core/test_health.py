from __future__ import annotations

import pytest
from django.test import Client, override_settings

from tests.conftest import WorkerProcess


def test_healthz_answers_without_dependencies() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
@override_settings(REDIS_URL="redis://127.0.0.1:1/0")
def test_readyz_names_redis_when_it_is_down() -> None:
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert "redis" in body["failed"]
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.worker
@pytest.mark.django_db
def test_readyz_does_not_depend_on_a_worker(celery_worker: WorkerProcess) -> None:
    """Web readiness is the database and Redis only: with every worker gone, web still
    takes requests (turns wait queued) instead of leaving the load balancer."""
    with_worker = Client().get("/readyz")
    assert with_worker.status_code == 200, with_worker.json()
    assert set(with_worker.json()["checks"]) == {"database", "redis"}

    celery_worker.stop()
    try:
        without = Client().get("/readyz")
        assert without.status_code == 200, without.json()
        assert without.json()["failed"] == []
    finally:
        celery_worker.start()


def test_metrics_exposes_prometheus_text() -> None:
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"python_info" in response.content
