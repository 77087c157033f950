"""Writes of long-term memory: ingest a document (check, chunk, store), embed its chunks.

`document_ingest` stores the document and its chunks without embeddings, then
`document_embed` fills them in batches. Whatever happens in between — the embedder down, the
process killed — the rows keep what is done: `document_embed` only ever embeds chunks that
have no embedding yet, so calling it again (the Celery task's retry, `manage.py memory
resume`, the ingest command run again) carries on where the last one stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction

from apps.core.telemetry import step_span
from apps.memory import selectors
from apps.memory.adapters import embedder
from apps.memory.chunking import chunk_text
from apps.memory.embeddings import EmbedderError, EmbedderUnavailable
from apps.memory.exceptions import (
    DocumentRefused,
    DocumentTooLarge,
    EmbedderDown,
    MemoryQueryInvalid,
)
from apps.memory.models import Chunk, Document, DocumentState
from apps.memory.selectors import SearchHit
from apps.tenants.models import Tenant

logger = logging.getLogger("warden.memory")

EMBED_TASK = "memory.document_embed"
NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_METADATA_BYTES = 8192
# Plain-text formats memory reads as they are. Anything else (PDF, Office, images, archives)
# is refused with `unsupported_type` rather than embedded as noise.
TEXT_EXTENSIONS = frozenset(
    {
        ".txt",
        ".md",
        ".markdown",
        ".rst",
        ".csv",
        ".tsv",
        ".json",
        ".yaml",
        ".yml",
        ".log",
        ".html",
        ".htm",
        ".xml",
        ".ini",
        ".toml",
        ".py",
        ".sql",
        ".text",
        "",
    }
)
TEXT_CONTENT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/x-yaml",
    "application/yaml",
    "application/octet-stream",
)
# A document embedded in the request that ingests it when it has at most this many chunks;
# a larger one is queued for the worker (its answer is 202, state pending).
INLINE_CHUNKS = 64


@dataclass(frozen=True)
class IngestResult:
    document: Document
    created: bool


def namespace_checked(namespace: str) -> str:
    if not NAMESPACE.match(namespace):
        raise MemoryQueryInvalid(
            "A namespace is 1-64 lower-case letters, digits, '_', '.' or '-'.",
            details={"namespace": namespace[:80]},
        )
    return namespace


def metadata_checked(metadata: Any, *, field: str = "metadata") -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise MemoryQueryInvalid(f"{field} must be a JSON object.", details={"field": field})
    metadata = dict(metadata)
    if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        raise MemoryQueryInvalid(
            f"{field} is larger than {MAX_METADATA_BYTES} bytes.", details={"field": field}
        )
    return metadata


def type_checked(*, filename: str, content_type: str | None = None) -> None:
    """Refuse what is not plain text by name or declared type (before reading it)."""
    suffix = PurePath(filename).suffix.lower()
    if suffix not in TEXT_EXTENSIONS:
        raise DocumentRefused(
            f"{filename!r}: {suffix} files are not supported; memory takes plain text "
            "(txt, md, rst, csv, json, yaml, html, ...).",
            code="unsupported_type",
        )
    if content_type and not content_type.lower().startswith(TEXT_CONTENT_TYPES):
        raise DocumentRefused(
            f"{filename!r}: content type {content_type} is not supported; memory takes plain text.",
            code="unsupported_type",
        )


def size_checked(size: int, *, name: str) -> None:
    limit = settings.WARDEN_MEMORY_MAX_DOCUMENT_BYTES
    if size > limit:
        raise DocumentTooLarge(
            f"{name!r} is {size} bytes; memory takes documents up to {limit} bytes.",
            details={"size": size, "limit": limit},
        )


def text_decoded(data: bytes, *, name: str) -> str:
    """The text of an uploaded file: UTF-8 without NUL bytes, or refused as binary."""
    size_checked(len(data), name=name)
    if b"\x00" in data[:65536]:
        raise DocumentRefused(f"{name!r} is a binary file.", code="binary_file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DocumentRefused(
            f"{name!r} is not UTF-8 text (a binary file, or another encoding).",
            code="binary_file",
        ) from None


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def document_ingest(
    *,
    tenant: Tenant,
    text: str,
    title: str,
    namespace: str = "default",
    metadata: Mapping[str, Any] | None = None,
    embed: bool = True,
) -> IngestResult:
    """Store `text` as a document of `tenant` in `namespace`, chunked, then embed it (inline
    when small, else on the worker). The same text in the same namespace is the same
    document: the existing one is returned (`created=False`), and resumed if unfinished."""
    namespace = namespace_checked(namespace)
    meta = dict(metadata_checked(metadata))
    text = text.replace("\r\n", "\n")
    size_checked(len(text.encode()), name=title)
    if "\x00" in text:
        raise DocumentRefused(f"{title!r} holds NUL characters (binary data).", code="binary_file")
    if not text.strip():
        raise DocumentRefused(f"{title!r} has no text.", code="empty_document")
    digest = content_hash(text)
    existing = Document.objects.filter(tenant=tenant, namespace=namespace, content_hash=digest)
    found = existing.first()
    if found is not None:
        if embed and found.state != DocumentState.READY:
            document_embed_or_queue(document=found)
        return IngestResult(found, False)
    pieces = chunk_text(
        text, size=settings.WARDEN_MEMORY_CHUNK_CHARS, overlap=settings.WARDEN_MEMORY_CHUNK_OVERLAP
    )
    with transaction.atomic():
        document = Document.objects.create(
            tenant=tenant,
            namespace=namespace,
            title=title[:255],
            content_hash=digest,
            metadata=meta,
            size_bytes=len(text.encode()),
            chunk_count=len(pieces),
        )
        Chunk.objects.bulk_create(
            Chunk(
                tenant=tenant,
                document=document,
                namespace=namespace,
                position=position,
                text=piece,
                metadata=meta,
            )
            for position, piece in enumerate(pieces)
        )
    logger.info(
        "memory document stored",
        extra={"tenant": str(tenant.id), "document": str(document.id), "chunks": len(pieces)},
    )
    if embed:
        document_embed_or_queue(document=document)
    return IngestResult(document, True)


def document_embed_or_queue(*, document: Document) -> Document:
    if document.chunk_count <= INLINE_CHUNKS:
        document = document_embed(document=document)
        if document.state == DocumentState.READY:
            return document
    document_queue(document=document)
    return document


def document_queue(*, document: Document, countdown: float = 0) -> None:
    """Have the worker embed (or go on embedding) the document, after the commit."""
    document_id = str(document.id)
    transaction.on_commit(
        lambda: current_app.signature(EMBED_TASK, args=[document_id]).apply_async(
            countdown=countdown
        )
    )


def document_embed(
    *, document: Document, progress: Callable[[int], None] | None = None
) -> Document:
    """Embed the document's chunks that have none yet, a batch at a time, each batch saved
    as it comes. The embedder down: the document is `waiting` (with the reason) and keeps
    what is done; an answer that can never be used (wrong dimension): it stays `pending`
    with the reason, and the error is raised."""
    model = embedder()
    batch_size = settings.WARDEN_MEMORY_EMBEDDING_BATCH
    while True:
        batch = list(
            Chunk.objects.filter(document=document, embedding__isnull=True)
            .order_by("position")
            .only("id", "text")[:batch_size]
        )
        if not batch:
            break
        try:
            vectors = model.embed([chunk.text for chunk in batch])
        except EmbedderUnavailable as exc:
            logger.warning(
                "memory ingestion paused: embedder unavailable",
                extra={"document": str(document.id), "error": str(exc)[:300]},
            )
            return _document_state(document, DocumentState.WAITING, f"paused: {exc}"[:500])
        except EmbedderError as exc:
            _document_state(document, DocumentState.PENDING, str(exc)[:500])
            raise EmbedderDown(str(exc), code="embedder_error") from exc
        for chunk, vector in zip(batch, vectors, strict=True):
            chunk.embedding = vector
        Chunk.objects.bulk_update(batch, ["embedding"])
        if progress is not None:
            progress(len(batch))
    document.embedding_model = model.name
    return _document_state(document, DocumentState.READY, "")


def _document_state(document: Document, state: str, detail: str) -> Document:
    document.state = state
    document.detail = detail
    document.save(update_fields=["state", "detail", "embedding_model", "updated_at"])
    return document


def document_embed_task_run(*, document_id: str) -> str | None:
    """The worker's part: embed what is left; the state it ends in (None: no such row)."""
    document = Document.objects.filter(id=uuid.UUID(document_id)).first()
    if document is None:
        return None
    return document_embed(document=document).state


def documents_unfinished() -> list[Document]:
    """Every tenant's documents not yet embedded (for `manage.py memory resume`)."""
    return list(Document.objects.exclude(state=DocumentState.READY).order_by("created_at"))


def document_delete(*, document: Document) -> None:
    document.delete()


MAX_QUERY_CHARS = 2000


def memory_search(
    *,
    tenant_id: uuid.UUID | str,
    query: str,
    k: int = 5,
    namespace: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> list[SearchHit]:
    """The tenant's k chunks most similar to `query`, best first. The embedder down: raises
    `EmbedderDown` (REST 503 `embedder_unavailable`; the memory_search tool fails with it,
    so the agent's timeline shows why memory said nothing) and logs a warning."""
    if not query.strip():
        raise MemoryQueryInvalid("The query is empty.", details={"q": query})
    if len(query) > MAX_QUERY_CHARS:
        raise MemoryQueryInvalid(
            f"The query is longer than {MAX_QUERY_CHARS} characters.", details={"q": len(query)}
        )
    if namespace:
        namespace_checked(namespace)
    filters = metadata_checked(metadata, field="filter")
    for key, value in filters.items():
        if not isinstance(value, str | int | float | bool):
            raise MemoryQueryInvalid(
                "A metadata filter matches plain values (string, number, boolean).",
                details={"filter": key},
            )
    # The retrieval step of the turn's trace (a child of the tool call that asked): ids and
    # counts only, never the query.
    with step_span(
        "retrieval",
        attributes={"warden.tenant.id": str(tenant_id), "warden.memory.k": k},
    ) as step:
        try:
            (vector,) = embedder().embed([query])
        except EmbedderUnavailable as exc:
            logger.warning(
                "memory search degraded: embedder unavailable",
                extra={"tenant": str(tenant_id), "error": str(exc)[:300]},
            )
            raise EmbedderDown(
                f"Memory search is unavailable: the embedder cannot answer ({exc}).",
                retry_after=30,
            ) from exc
        except EmbedderError as exc:
            raise EmbedderDown(f"Memory search failed: {exc}", code="embedder_error") from exc
        rows = selectors.chunk_nearest(
            tenant_id=tenant_id, vector=vector, k=k, namespace=namespace, metadata=filters
        )
        hits = selectors.hits(rows)
        step.set_many({"warden.memory.hits": len(hits)})
    return hits
