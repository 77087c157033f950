"""Long-term memory: documents a tenant ingested, cut into chunks with an embedding each.

Both carry the tenant and the namespace (chunks repeat them, with the document's metadata, so a
filtered vector search reads one table). A document is identified within its tenant and
namespace by the SHA-256 of its text: ingesting the same text again finds the row that exists,
and an interrupted ingestion resumes by embedding the chunks that have no embedding yet.

The embedding column's dimension is the configured model's (WARDEN_MEMORY_EMBEDDING_DIMENSIONS),
read when the migration runs: one model per database, so one fixed-width column and one HNSW
index that every query can use (README "Memory" says why, and how to change model).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from pgvector.django import HnswIndex, VectorField

from apps.tenants.models import TenantOwned

# HNSW build parameters (benchmarks/bench_retrieval.py tunes them and ef_search).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 128


class DocumentState(models.TextChoices):
    PENDING = "pending", "Waiting to be embedded"
    WAITING = "waiting", "Paused: the embedder is unavailable"
    READY = "ready", "Ready"


class Document(TenantOwned):
    """A text a tenant put into long-term memory, in one namespace.

    `state` is `pending` until every chunk has an embedding, `waiting` while the embedder
    is down (the work is kept and resumes), then `ready`."""

    namespace = models.CharField(max_length=64, default="default")
    title = models.CharField(max_length=255)
    content_hash = models.CharField(max_length=64)
    metadata = models.JSONField(default=dict, blank=True)
    size_bytes = models.PositiveIntegerField(default=0)
    chunk_count = models.PositiveIntegerField(default=0)
    state = models.CharField(
        max_length=16, choices=DocumentState.choices, default=DocumentState.PENDING
    )
    detail = models.CharField(max_length=500, blank=True, default="")
    embedding_model = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "namespace", "content_hash"], name="memory_document_unique_text"
            )
        ]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.title}"


class Chunk(TenantOwned):
    """A piece of a document, with its embedding (null until embedded).

    Tenant, namespace and metadata are copied from the document so a search filters and
    orders by distance on this table alone."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    namespace = models.CharField(max_length=64)
    position = models.PositiveIntegerField()
    text = models.TextField()
    metadata = models.JSONField(default=dict, blank=True)
    embedding = VectorField(dimensions=settings.WARDEN_MEMORY_EMBEDDING_DIMENSIONS, null=True)

    class Meta:
        ordering = ["document", "position"]
        constraints = [
            models.UniqueConstraint(fields=["document", "position"], name="memory_chunk_position")
        ]
        indexes = [
            models.Index(fields=["tenant", "namespace"], name="memory_chunk_tenant_ns"),
            HnswIndex(
                name="memory_chunk_embedding_hnsw",
                fields=["embedding"],
                m=HNSW_M,
                ef_construction=HNSW_EF_CONSTRUCTION,
                opclasses=["vector_cosine_ops"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.position}"
