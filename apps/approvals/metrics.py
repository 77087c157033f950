"""Approvals for `/metrics`: what waits for a human, read from the database when Prometheus
scrapes (every web process reports the same figure)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from apps.approvals.models import ApprovalRequest, ApprovalStatus

logger = logging.getLogger("warden.approvals")


class ApprovalCollector(Collector):
    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("warden_approvals_pending", "")
        yield GaugeMetricFamily("warden_approval_oldest_pending_age_seconds", "")

    def collect(self) -> Iterator[Metric]:
        try:
            row = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING).aggregate(
                pending=Count("id"), oldest=Min("created_at")
            )
        except Exception:  # a scrape never fails for it: the other figures still go out
            logger.warning("approval metrics skipped: the database could not be read")
            return
        oldest = row["oldest"]
        yield GaugeMetricFamily(
            "warden_approvals_pending",
            "Tool calls parked until a human approves or rejects them.",
            value=row["pending"],
        )
        yield GaugeMetricFamily(
            "warden_approval_oldest_pending_age_seconds",
            "How long the oldest of them has waited (0 when none waits).",
            value=(timezone.now() - oldest).total_seconds() if oldest else 0.0,
        )


_registered: list[ApprovalCollector] = []


def register() -> None:
    """Once per process (AppConfig.ready)."""
    if not _registered:
        collector = ApprovalCollector()
        REGISTRY.register(collector)
        _registered.append(collector)
