"""Memory fixtures: the hash embedder by default (config/settings/test.py), a real
OpenAI-compatible embeddings server where a test needs an endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.agents.conftest import no_dispatch
from tests.memory.embedding_server import EmbeddingServer

__all__ = ["no_dispatch"]  # the agents' fixture: turns run in-process here too


@pytest.fixture
def embedding_server(settings: Any) -> Iterator[EmbeddingServer]:
    server = EmbeddingServer()
    server.start()
    settings.WARDEN_MEMORY_EMBEDDER = "openai"
    settings.WARDEN_MEMORY_EMBEDDING_URL = server.url
    settings.WARDEN_MEMORY_EMBEDDING_MODEL = "test-embedder"
    settings.WARDEN_EGRESS_ALLOW = [f"127.0.0.1:{server.port}"]
    yield server
    server.stop()
