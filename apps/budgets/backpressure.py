"""Backpressure, classified: how far the queue of turns waiting for a worker has backed up.

Pure: the agents app measures the backlog (it owns turns) and acts on the state; this module
only says which state a backlog is in, so the thresholds are one rule everywhere (admission,
`/readyz` detail, `/metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["ok", "degraded", "refusing"]
STATES: tuple[State, ...] = ("ok", "degraded", "refusing")


@dataclass(frozen=True)
class Backlog:
    """Turns waiting for a worker (each session's head of queue only) and the oldest's age."""

    depth: int
    oldest_age_s: float


@dataclass(frozen=True)
class Thresholds:
    degrade_depth: int
    degrade_age_s: float
    refuse_depth: int
    refuse_age_s: float


def classify(backlog: Backlog, thresholds: Thresholds) -> State:
    """`refusing` past either hard limit, `degraded` past either soft one, else `ok`. An empty
    queue is `ok` whatever its (meaningless) age."""
    if backlog.depth <= 0:
        return "ok"
    if backlog.depth >= thresholds.refuse_depth or backlog.oldest_age_s >= thresholds.refuse_age_s:
        return "refusing"
    if (
        backlog.depth >= thresholds.degrade_depth
        or backlog.oldest_age_s >= thresholds.degrade_age_s
    ):
        return "degraded"
    return "ok"
