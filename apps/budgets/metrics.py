"""Budget figures for `/metrics`, read from Redis when Prometheus scrapes (no multiprocess
mode needed: every web process reports the same shared numbers)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from apps.budgets.services.ledger import ledger

logger = logging.getLogger("warden.budgets")

SCOPES = ("tenant", "agent", "user", "session", "turn")


class BudgetCollector(Collector):
    def describe(self) -> Iterator[Metric]:
        """The names, without asking Redis (the registry calls this when registering)."""
        yield GaugeMetricFamily("warden_budget_reservations_open", "")
        yield CounterMetricFamily("warden_budget_refusals", "", labels=["scope"])
        yield CounterMetricFamily("warden_model_rate_limited", "", labels=["scope"])
        yield CounterMetricFamily("warden_budget_reservations_expired", "")
        yield CounterMetricFamily("warden_budget_reservations_settled_late", "")
        yield CounterMetricFamily("warden_budget_overruns", "")

    def collect(self) -> Iterator[Metric]:
        try:
            led = ledger()
            open_count = led.open_count()
            stats = led.stats()
        except redis.RedisError:
            logger.warning("budget metrics skipped: ledger unreachable")
            return
        yield GaugeMetricFamily(
            "warden_budget_reservations_open",
            "Model calls holding budget right now (reserved, not yet settled or expired).",
            value=open_count,
        )
        refusals = CounterMetricFamily(
            "warden_budget_refusals",
            "Model calls or turns refused because a cap had no room, by scope.",
            labels=["scope"],
        )
        limited = CounterMetricFamily(
            "warden_model_rate_limited",
            "Model calls or turns refused by a requests/tokens-per-minute window, by scope.",
            labels=["scope"],
        )
        for scope in SCOPES:
            refusals.add_metric([scope], stats.get(f"over:{scope}", 0))
        for scope in ("tenant", "user"):
            limited.add_metric([scope], stats.get(f"rate:{scope}", 0))
        yield refusals
        yield limited
        yield CounterMetricFamily(
            "warden_budget_reservations_expired",
            "Holds of calls whose worker died before settling, charged by the reconciler.",
            value=stats.get("expired", 0),
        )
        yield CounterMetricFamily(
            "warden_budget_reservations_settled_late",
            "Holds past their deadline whose call's ledger row was committed, settled at it by "
            "the reconciler (the worker died after the commit, before the Redis settle).",
            value=stats.get("settled_late", 0),
        )
        yield CounterMetricFamily(
            "warden_budget_overruns",
            "Calls that used more than they reserved (settled at the truth).",
            value=stats.get("overrun", 0),
        )


_registered: list[BudgetCollector] = []


def register() -> None:
    """Once per process (AppConfig.ready)."""
    if not _registered:
        collector = BudgetCollector()
        REGISTRY.register(collector)
        _registered.append(collector)
