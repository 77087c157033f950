"""The embedding endpoint down: ingestion pauses, keeps what is done, and resumes — through
the service, the Celery task and `manage.py memory ingest` — against a real HTTP server
speaking /v1/embeddings."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import Retry
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.memory import services, tasks
from apps.memory.models import Chunk, Document, DocumentState
from tests.conftest import World
from tests.memory.embedding_server import EmbeddingServer

pytestmark = pytest.mark.django_db

PARAGRAPHS = "\n\n".join(f"Paragraph {i}: " + f"topic{i} " * 30 for i in range(6))


def texts_of(document: Document) -> list[str]:
    return list(Chunk.objects.filter(document=document).values_list("text", flat=True))


def embedded(document: Document) -> int:
    return Chunk.objects.filter(document=document, embedding__isnull=False).count()


@pytest.fixture
def small_batches(settings: Any) -> None:
    settings.WARDEN_MEMORY_EMBEDDING_BATCH = 2
    settings.WARDEN_MEMORY_CHUNK_CHARS = 250
    settings.WARDEN_MEMORY_CHUNK_OVERLAP = 20


@pytest.mark.usefixtures("small_batches")
def test_down_mid_document_pauses_and_resumes_without_redoing_work(
    world: World, embedding_server: EmbeddingServer
) -> None:
    embedding_server.down_after = 1  # one batch answered, then 503s
    result = services.document_ingest(tenant=world.tenant_a, text=PARAGRAPHS, title="p")
    document = result.document
    assert document.chunk_count >= 5
    assert document.state == DocumentState.WAITING
    assert "paused" in document.detail and "503" in document.detail
    assert embedded(document) == 2  # the first batch is kept

    embedding_server.down = False
    embedding_server.down_after = None
    document = services.document_embed(document=document)

    assert document.state == DocumentState.READY and document.detail == ""
    assert embedded(document) == document.chunk_count
    # Every chunk was embedded exactly once: nothing lost, nothing redone.
    assert Counter(embedding_server.inputs) == Counter(texts_of(document))


def test_endpoint_not_listening_pauses_too(world: World, embedding_server: EmbeddingServer) -> None:
    embedding_server.stop()  # connection refused
    document = services.document_ingest(tenant=world.tenant_a, text="hello", title="h").document
    assert document.state == DocumentState.WAITING and embedded(document) == 0
    embedding_server.start()  # same port
    again = services.document_ingest(tenant=world.tenant_a, text="hello", title="h")
    assert not again.created and again.document.id == document.id
    assert again.document.state == DocumentState.READY and embedded(document) == 1


def test_the_worker_task_retries_while_down_and_finishes_after(
    world: World, embedding_server: EmbeddingServer
) -> None:
    document = services.document_ingest(
        tenant=world.tenant_a, text="queued text", title="q", embed=False
    ).document
    embedding_server.down = True
    with pytest.raises(Retry):
        tasks.document_embed(str(document.id))
    document.refresh_from_db()
    assert document.state == DocumentState.WAITING
    embedding_server.down = False
    assert tasks.document_embed(str(document.id)) == DocumentState.READY


def test_the_egress_guard_checks_the_embedding_endpoint(
    world: World, embedding_server: EmbeddingServer, settings: Any
) -> None:
    settings.WARDEN_EGRESS_ALLOW = []  # loopback no longer allowed: refused at connect
    document = services.document_ingest(tenant=world.tenant_a, text="x", title="x").document
    assert document.state == DocumentState.WAITING
    assert embedding_server.requests == 0


@pytest.mark.usefixtures("small_batches")
def test_command_skips_with_reasons_pauses_and_resumes(
    world: World, embedding_server: EmbeddingServer, tmp_path: Path, capsys: Any
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text(PARAGRAPHS)
    (docs / "faq.txt").write_text("Q: where is the office?\n\nA: on the third floor.")
    (docs / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (docs / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    args = [
        "memory",
        "ingest",
        str(docs),
        "--tenant",
        "acme",
        "--namespace",
        "kb",
        "--retries",
        "2",
    ]

    embedding_server.down = True
    with pytest.raises(SystemExit) as exit_:
        call_command(*args)
    assert exit_.value.code == 3  # paused
    err = capsys.readouterr().err
    assert "skipped" in err and "logo.png: unsupported_type" in err
    assert "blob.txt: binary_file" in err
    assert "retrying" in err and "run the command again" in err
    documents = Document.objects.filter(tenant=world.tenant_a, namespace="kb")
    assert {d.title for d in documents} == {"guide.md", "faq.txt"}
    assert all(d.state == DocumentState.WAITING for d in documents)

    embedding_server.down = False
    with pytest.raises(SystemExit) as exit_:
        call_command(*args)
    assert exit_.value.code == 2  # everything embedded; the two refusals still reported
    assert all(d.state == DocumentState.READY for d in documents.all())
    assert Counter(embedding_server.inputs) == Counter(
        Chunk.objects.filter(tenant=world.tenant_a).values_list("text", flat=True)
    )
    (docs / "logo.png").unlink()
    (docs / "blob.txt").unlink()
    call_command(*args)  # nothing left to do: exit 0, nothing embedded again
    assert "unchanged" in capsys.readouterr().out
    assert len(embedding_server.inputs) == Chunk.objects.filter(tenant=world.tenant_a).count()


def test_command_refuses_an_unknown_tenant(world: World, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    with pytest.raises(CommandError, match="nobody"):
        call_command("memory", "ingest", str(tmp_path), "--tenant", "nobody")
