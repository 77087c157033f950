"""The agents' figures for `/metrics`.

- The turn queue (apps/agents/admission.py), measured when Prometheus scrapes.
- Turns by outcome, step latency by kind, model tokens and cost, policy denials: counted where
  they happen (the loop, in whatever worker process runs the turn; apps/core/telemetry.py
  keeps them in the process), added to one Redis hash at the end of every run of a turn
  (`metrics_flush`, one round trip), and read from it at scrape time — so every web process
  reports the counts of every worker, without Prometheus' multiprocess mode and its shared
  directory (web and workers need not share a disk).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterator

import redis
from django.conf import settings
from prometheus_client import REGISTRY
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from apps.budgets.backpressure import STATES
from apps.core import telemetry
from apps.core.redis_pool import SharedConnectionPool

logger = logging.getLogger("warden.agents")

SEPARATOR = "\x1f"  # between a counter's name and its label values in a hash field


def metrics_key() -> str:
    return f"{settings.WARDEN_METRICS_REDIS_PREFIX}:turns"


def _redis() -> redis.Redis:
    return redis.Redis(connection_pool=SharedConnectionPool.from_url(str(settings.REDIS_URL)))


def metrics_flush() -> None:
    """Add what this process counted since the last flush to the shared counts."""
    counts = telemetry.metrics_drain()
    if not counts:
        return
    try:
        pipe = _redis().pipeline(transaction=False)
        key = metrics_key()
        for (name, labels), value in counts.items():
            pipe.hincrbyfloat(key, SEPARATOR.join((name, *labels)), value)
        pipe.execute()
    except redis.RedisError:
        # Metrics never fail a turn; these counts are lost.
        logger.warning("turn metrics not counted: Redis unreachable")


# label names of each counter in the hash, and how it is exposed
COUNTERS = {
    "turns": (
        "warden_turns",
        "Runs of turns, by how they ended (completed, a failure's reason, waiting_approval, "
        "waiting_tool, cancelled).",
        ["outcome"],
    ),
    "tokens": (
        "warden_model_tokens",
        "Tokens of model calls, by tenant, model and direction (input, output).",
        ["tenant", "model", "direction"],
    ),
    "cost": (
        "warden_model_cost",
        "What model calls cost, in the tenant's budget currency, by tenant and model.",
        ["tenant", "model"],
    ),
    "policy_denials": (
        "warden_policy_denials",
        "Tool calls denied before they ran (a policy, or a policy engine failing closed).",
        ["tenant", "tool"],
    ),
}
STEP_HISTOGRAM = "warden_step_duration_seconds"


class TurnMetricsCollector(Collector):
    def describe(self) -> Iterator[Metric]:
        """The names, without asking Redis (the registry calls this when registering)."""
        for name, doc, labels in COUNTERS.values():
            yield CounterMetricFamily(name, doc, labels=labels)
        yield HistogramMetricFamily(STEP_HISTOGRAM, "", labels=["kind"])

    def collect(self) -> Iterator[Metric]:
        try:
            raw = _redis().hgetall(metrics_key())
        except redis.RedisError:
            logger.warning("turn metrics skipped: Redis unreachable")
            return
        families = {
            key: CounterMetricFamily(name, doc, labels=labels)
            for key, (name, doc, labels) in COUNTERS.items()
        }
        buckets: dict[str, dict[str, float]] = defaultdict(dict)
        sums: dict[str, float] = {}
        for field, value in raw.items():
            text = field.decode() if isinstance(field, bytes) else str(field)
            name, *labels = text.split(SEPARATOR)
            number = float(value)
            if name == "step_bucket" and len(labels) == 2:
                buckets[labels[0]][labels[1]] = number
            elif name == "step_sum" and len(labels) == 1:
                sums[labels[0]] = number
            elif name in COUNTERS and len(labels) == len(COUNTERS[name][2]):
                families[name].add_metric(labels, number)
        yield from families.values()
        histogram = HistogramMetricFamily(
            STEP_HISTOGRAM,
            "How long each step of a turn took, by kind (prompt_build, model_call, retrieval, "
            "tool_call, policy_check, approval_wait).",
            labels=["kind"],
        )
        for kind in sorted(set(buckets) | set(sums)):
            cumulative, points = 0.0, []
            for bound in (*telemetry.STEP_BUCKETS, math.inf):
                le = "+Inf" if bound == math.inf else str(bound)
                cumulative += buckets[kind].get(le, 0.0)
                points.append((le, cumulative))
            histogram.add_metric([kind], points, sum_value=sums.get(kind, 0.0))
        yield histogram


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


_registered: list[Collector] = []


def register() -> None:
    if not _registered:
        for collector in (BackpressureCollector(), TurnMetricsCollector()):
            REGISTRY.register(collector)
            _registered.append(collector)
