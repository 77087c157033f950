"""Domain errors of memory; api/views.py maps them to HTTP."""

from __future__ import annotations

from apps.core.exceptions import InvalidInput, Unavailable


class DocumentRefused(InvalidInput):
    """A document memory does not take: `binary_file`, `unsupported_type`, `empty_document`,
    `invalid_encoding`. The message says why."""

    code = "document_refused"


class DocumentTooLarge(InvalidInput):
    """Larger than WARDEN_MEMORY_MAX_DOCUMENT_BYTES (REST: 413)."""

    code = "document_too_large"


class MemoryQueryInvalid(InvalidInput):
    """A namespace, metadata object or filter that memory can't use (`details` by field)."""

    code = "invalid_memory_query"


class EmbedderDown(Unavailable):
    """The embedder can't answer now: ingestion is paused (kept, resumed later) and
    search is unavailable until it is back."""

    code = "embedder_unavailable"
