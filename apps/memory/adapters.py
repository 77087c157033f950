"""The glue between the framework-free embedders (embeddings/) and the settings."""

from __future__ import annotations

import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.core.egress.adapters import platform_egress_policy
from apps.memory.embeddings import Embedder, HashEmbedder

_lock = threading.Lock()
_cache: dict[tuple[object, ...], Embedder] = {}


def _key() -> tuple[object, ...]:
    return (
        settings.WARDEN_MEMORY_EMBEDDER,
        settings.WARDEN_MEMORY_EMBEDDING_DIMENSIONS,
        settings.WARDEN_MEMORY_EMBEDDING_URL,
        settings.WARDEN_MEMORY_EMBEDDING_MODEL,
        tuple(settings.WARDEN_EGRESS_ALLOW),
    )


def _build() -> Embedder:
    kind = settings.WARDEN_MEMORY_EMBEDDER
    dimensions = settings.WARDEN_MEMORY_EMBEDDING_DIMENSIONS
    if kind == "hash":
        return HashEmbedder(dimensions)
    if kind == "local":
        from apps.memory.embeddings.minilm import MiniLMEmbedder

        if dimensions != MiniLMEmbedder.dimensions:
            raise ImproperlyConfigured(
                "WARDEN_MEMORY_EMBEDDER=local gives 384-dimensional vectors; "
                f"WARDEN_MEMORY_EMBEDDING_DIMENSIONS is {dimensions}"
            )
        return MiniLMEmbedder()
    if kind == "openai":
        from apps.memory.embeddings.openai_compat import OpenAICompatEmbedder

        if not settings.WARDEN_MEMORY_EMBEDDING_URL:
            raise ImproperlyConfigured(
                "WARDEN_MEMORY_EMBEDDER=openai needs WARDEN_MEMORY_EMBEDDING_URL"
            )
        return OpenAICompatEmbedder(
            base_url=settings.WARDEN_MEMORY_EMBEDDING_URL,
            model=settings.WARDEN_MEMORY_EMBEDDING_MODEL,
            api_key=settings.WARDEN_MEMORY_EMBEDDING_API_KEY,
            dimensions=dimensions,
            egress=platform_egress_policy(),
            timeout_s=settings.WARDEN_MEMORY_EMBEDDING_TIMEOUT_S,
        )
    raise ImproperlyConfigured(
        f"WARDEN_MEMORY_EMBEDDER={kind!r}: expected 'local', 'openai' or 'hash'"
    )


def embedder() -> Embedder:
    """The configured embedder, built once per process and configuration (the local model
    loads on its first `embed`)."""
    key = _key()
    with _lock:
        if key not in _cache:
            _cache[key] = _build()
        return _cache[key]
