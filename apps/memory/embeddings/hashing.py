from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence

from .base import normalize

_WORD = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    """Feature hashing of lower-cased words (and word pairs) into `dimensions` buckets, signed
    by a second hash bit. Deterministic across processes (BLAKE2, not Python's salted hash), so
    a test's worker and its pytest process agree; texts sharing words land close together."""

    def __init__(self, dimensions: int = 384) -> None:
        self.dimensions = dimensions
        self.name = f"hash-{dimensions}"

    def _features(self, text: str) -> list[str]:
        words = _WORD.findall(text.lower())
        return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]

    def embed_one(self, text: str) -> list[float]:
        vector = [0.0] * self.dimensions
        for feature in self._features(text):
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dimensions
            vector[bucket] += 1.0 if digest[4] & 1 else -1.0
        if not any(vector):
            vector[0] = 1.0  # no words at all: still a valid, unit-length vector
        return normalize(vector)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.embed_one(text) for text in texts]
