"""Retrieval is scoped to the tenant, with filters and on the HNSW index: another tenant's
chunks — however close to the query — never come back."""

from __future__ import annotations

import random
from typing import Any

import pytest
from django.db import connection

from apps.memory import selectors, services
from apps.memory.embeddings import HashEmbedder, normalize
from apps.memory.models import Chunk, Document, DocumentState
from apps.tenants.models import Tenant
from tests.conftest import World

pytestmark = pytest.mark.django_db

QUERY = "where is the quarterly revenue report kept"


def seed(
    tenant: Tenant,
    centre: list[float],
    count: int,
    spread: float,
    *,
    namespace: str = "default",
    metadata: dict[str, Any] | None = None,
    rng: random.Random,
) -> list[Chunk]:
    document = Document.objects.create(
        tenant=tenant,
        namespace=namespace,
        title=f"{tenant.slug}-{namespace}-{spread}",
        content_hash=f"{tenant.slug}{namespace}{spread}{rng.random()}",
        state=DocumentState.READY,
        chunk_count=count,
    )
    chunks = [
        Chunk(
            tenant=tenant,
            document=document,
            namespace=namespace,
            position=i,
            text=f"{tenant.slug} chunk {i}",
            metadata=metadata or {},
            embedding=normalize([c + rng.gauss(0, spread) for c in centre]),
        )
        for i in range(count)
    ]
    return Chunk.objects.bulk_create(chunks)


def exact_nearest(chunks: list[Chunk], query: list[float], k: int) -> set[Any]:
    def distance(chunk: Chunk) -> float:
        return 1 - sum(a * b for a, b in zip(chunk.embedding, query, strict=True))

    return {c.id for c in sorted(chunks, key=distance)[:k]}


def force_hnsw() -> None:
    # Small tables would otherwise be read sequentially (exact): make the planner take the
    # HNSW index, the path whose candidate list another tenant's rows can fill.
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")


def test_another_tenants_near_identical_vectors_never_come_back(world: World) -> None:
    rng = random.Random(12)
    query = HashEmbedder().embed_one(QUERY)
    # Tenant B: 1500 chunks nearly identical to the query; tenant A: 30, much farther away.
    seed(world.tenant_b, query, 1500, 0.002, rng=rng)
    mine = seed(world.tenant_a, query, 30, 0.08, rng=rng)
    force_hnsw()
    plan = selectors.chunk_nearest_query(tenant_id=world.tenant_a.id, vector=query, k=10).explain()
    assert "memory_chunk_embedding_hnsw" in plan, plan

    hits = services.memory_search(tenant_id=world.tenant_a.id, query=QUERY, k=10)

    # All ten from A (the iterative scan went past B's 1500 candidates), and the right ten.
    assert len(hits) == 10
    assert {h.chunk_id for h in hits} == exact_nearest(mine, query, 10)
    assert all(h.title.startswith("acme") for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # B searching sees B's own, never A's.
    theirs = services.memory_search(tenant_id=world.tenant_b.id, query=QUERY, k=10)
    assert len(theirs) == 10 and all(h.title.startswith("globex") for h in theirs)


def test_filters_keep_to_the_tenant_namespace_and_metadata(world: World) -> None:
    rng = random.Random(7)
    query = HashEmbedder().embed_one(QUERY)
    handbook = {"kind": "handbook"}
    # B has chunks in the same namespace with the same metadata, closer to the query.
    seed(world.tenant_b, query, 400, 0.002, namespace="docs", metadata=handbook, rng=rng)
    seed(world.tenant_a, query, 200, 0.01, namespace="other", metadata=handbook, rng=rng)
    seed(world.tenant_a, query, 200, 0.01, namespace="docs", metadata={"kind": "memo"}, rng=rng)
    wanted = seed(world.tenant_a, query, 5, 0.2, namespace="docs", metadata=handbook, rng=rng)
    force_hnsw()

    hits = services.memory_search(
        tenant_id=world.tenant_a.id, query=QUERY, k=10, namespace="docs", metadata=handbook
    )

    # Only five chunks pass every filter; the scan finds all of them and nothing else.
    assert {h.chunk_id for h in hits} == {c.id for c in wanted}
    assert all(h.namespace == "docs" and h.metadata == handbook for h in hits)


def test_chunks_without_an_embedding_are_not_returned(world: World) -> None:
    services.document_ingest(
        tenant=world.tenant_a, text="revenue report", title="unembedded", embed=False
    )
    assert services.memory_search(tenant_id=world.tenant_a.id, query=QUERY, k=5) == []
