"""The backpressure classification (pure): which state a backlog of queued turns is in."""

from __future__ import annotations

import pytest

from apps.budgets.backpressure import Backlog, Thresholds, classify

LIMITS = Thresholds(degrade_depth=200, degrade_age_s=30, refuse_depth=1000, refuse_age_s=120)


@pytest.mark.parametrize(
    ("depth", "age", "state"),
    [
        (0, 0, "ok"),
        (0, 10_000, "ok"),  # nothing queued: an age means nothing
        (199, 29.9, "ok"),
        (200, 0, "degraded"),
        (1, 30, "degraded"),
        (999, 119, "degraded"),
        (1000, 0, "refusing"),
        (1, 120, "refusing"),
    ],
)
def test_soft_limits_degrade_and_hard_limits_refuse(depth: int, age: float, state: str) -> None:
    assert classify(Backlog(depth, age), LIMITS) == state
