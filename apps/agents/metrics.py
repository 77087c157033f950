"""The turn queue for `/metrics`, measured when Prometheus scrapes (apps/agents/admission.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from apps.budgets.backpressure import STATES

logger = logging.getLogger("warden.agents")


class BackpressureCollector(Collector):
    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("warden_turns_queued", "")
        yield GaugeMetricFamily("warden_turn_oldest_queued_age_seconds", "")
        yield GaugeMetricFamily("warden_backpressure_state", "", labels=["state"])

    def collect(self) -> Iterator[Metric]:
        from apps.agents.admission import backpressure_state

        try:
            state, backlog = backpressure_state()
        except Exception:
            logger.warning("backpressure metrics skipped: the queue could not be measured")
            return
        yield GaugeMetricFamily(
            "warden_turns_queued",
            "Turns waiting for a worker (each session's head of queue).",
            value=backlog.depth,
        )
        yield GaugeMetricFamily(
            "warden_turn_oldest_queued_age_seconds",
            "How long the oldest of them has waited.",
            value=backlog.oldest_age_s,
        )
        states = GaugeMetricFamily(
            "warden_backpressure_state",
            "1 for the state admission is in: ok, degraded (turns run small) or refusing (503).",
            labels=["state"],
        )
        for name in STATES:
            states.add_metric([name], 1.0 if name == state else 0.0)
        yield states


_registered: list[BackpressureCollector] = []


def register() -> None:
    if not _registered:
        collector = BackpressureCollector()
        REGISTRY.register(collector)
        _registered.append(collector)
