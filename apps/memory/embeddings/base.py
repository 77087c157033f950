from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable


class EmbedderError(Exception):
    """The embedder refused the input or answered something unusable (not worth a retry)."""


class EmbedderUnavailable(EmbedderError):
    """The embedder cannot answer now (endpoint down, timed out, model not installed): the
    caller keeps the work and tries again later."""


@runtime_checkable
class Embedder(Protocol):
    name: str  # recorded on each document: vectors of different models don't compare
    dimensions: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text, in order."""
        ...


def normalize(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:
        return [0.0] * len(vector)
    return [x / norm for x in vector]
