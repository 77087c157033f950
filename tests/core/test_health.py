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
def test_readyz_is_green_with_a_worker_and_reports_a_stopped_one(
    celery_worker: WorkerProcess,
) -> None:
    ok = Client().get("/readyz")
    assert ok.status_code == 200, ok.json()
    assert ok.json()["failed"] == []

    celery_worker.stop()
    try:
        down = Client().get("/readyz")
        assert down.status_code == 503
        assert down.json()["failed"] == ["worker"]
        assert "no Celery worker" in down.json()["checks"]["worker"]["detail"]
    finally:
        celery_worker.start()


def test_metrics_exposes_prometheus_text() -> None:
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"python_info" in response.content
