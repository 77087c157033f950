"""Reads of long-term memory. Every one takes the tenant.

`memory_search` is a filtered nearest-neighbour query on the HNSW index: the tenant (always),
the namespace and a metadata containment filter (`metadata @> {...}`) are WHERE clauses of the
same query that orders by cosine distance. An HNSW scan alone returns its ef_search nearest
candidates and would then lose every one another tenant owns; pgvector's iterative scan
(`hnsw.iterative_scan = relaxed_order`) keeps scanning until k rows pass the filters (or
hnsw.max_scan_tuples are visited). relaxed_order may return rows slightly out of order, so
the k rows are sorted again by their distance here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from pgvector.django import CosineDistance

from apps.memory.models import Chunk, Document
from apps.tenants.models import Tenant

MAX_K = 50


@dataclass(frozen=True)
class SearchHit:
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    title: str
    namespace: str
    position: int
    text: str
    metadata: dict[str, Any]
    score: float  # cosine similarity, 1 is identical


def document_list(*, tenant: Tenant, namespace: str | None = None) -> QuerySet[Document]:
    documents = Document.objects.filter(tenant=tenant)
    if namespace:
        documents = documents.filter(namespace=namespace)
    return documents.order_by("-created_at", "id")


def document_get(*, tenant: Tenant, document_id: uuid.UUID) -> Document:
    return Document.objects.get(tenant=tenant, id=document_id)


def hnsw_settings(*, ef_search: int, max_scan_tuples: int) -> None:
    """Session settings for the HNSW scans of the current transaction only (SET LOCAL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), "
            "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('hnsw.max_scan_tuples', %s, true)",
            [str(ef_search), str(max_scan_tuples)],
        )


def chunk_nearest_query(
    *,
    tenant_id: uuid.UUID | str,
    vector: Sequence[float],
    k: int,
    namespace: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> QuerySet[Chunk]:
    """The query of `chunk_nearest`, unevaluated (for EXPLAIN)."""
    k = max(1, min(k, MAX_K))
    chunks = Chunk.objects.filter(tenant_id=tenant_id, embedding__isnull=False)
    if namespace:
        chunks = chunks.filter(namespace=namespace)
    if metadata:
        chunks = chunks.filter(metadata__contains=dict(metadata))
    return (
        chunks.select_related("document")
        .defer("embedding", "document__metadata")
        .annotate(distance=CosineDistance("embedding", list(vector)))
        .order_by("distance")[:k]
    )


def chunk_nearest(
    *,
    tenant_id: uuid.UUID | str,
    vector: Sequence[float],
    k: int,
    namespace: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> list[tuple[Chunk, float]]:
    """The tenant's k chunks nearest to `vector` (cosine), with their distances."""
    query = chunk_nearest_query(
        tenant_id=tenant_id, vector=vector, k=k, namespace=namespace, metadata=metadata
    )
    with transaction.atomic():
        hnsw_settings(
            ef_search=max(settings.WARDEN_MEMORY_EF_SEARCH, k),
            max_scan_tuples=settings.WARDEN_MEMORY_MAX_SCAN_TUPLES,
        )
        # `distance` is the annotation above.
        rows = [(chunk, float(chunk.distance)) for chunk in query]  # type: ignore[attr-defined]
    return sorted(rows, key=lambda row: row[1])


def hits(rows: list[tuple[Chunk, float]]) -> list[SearchHit]:
    return [
        SearchHit(
            chunk_id=chunk.id,
            document_id=chunk.document_id,
            title=chunk.document.title,
            namespace=chunk.namespace,
            position=chunk.position,
            text=chunk.text,
            metadata=chunk.metadata,
            score=round(1.0 - distance, 6),
        )
        for chunk, distance in rows
    ]
