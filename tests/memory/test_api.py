"""Memory over REST: ingestion (JSON and upload), its refusals, search, and who may do what."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from apps.memory import services
from apps.memory.models import Chunk, Document
from tests.conftest import World, client_for
from tests.memory.embedding_server import EmbeddingServer

pytestmark = pytest.mark.django_db

DOCS = "/api/v1/memory/documents"
SEARCH = "/api/v1/memory/search"
HANDBOOK = (
    "# Travel handbook\n\nEmployees book train travel through the travel desk. "
    "Flights need a manager's approval.\n\nExpenses are filed within thirty days."
)


def post_text(client: APIClient, text: str = HANDBOOK, **fields: Any) -> Any:
    return client.post(DOCS, {"text": text, **fields}, format="json")


def upload(client: APIClient, name: str, data: bytes, content_type: str = "text/plain") -> Any:
    file = SimpleUploadedFile(name, data, content_type=content_type)
    return client.post(
        DOCS,
        {"file": file, "namespace": "files", "metadata": '{"kind": "upload"}'},
        format="multipart",
    )


def test_ingest_text_then_search_it(world: World) -> None:
    client = client_for(world.tenant_a, ["write"])
    response = post_text(client, namespace="hr", metadata={"kind": "handbook"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["state"] == "ready" and body["chunk_count"] >= 1
    assert body["title"] == "# Travel handbook" and body["metadata"] == {"kind": "handbook"}

    again = post_text(client, namespace="hr", metadata={"kind": "handbook"})
    assert again.status_code == 200 and again.json()["id"] == body["id"]  # same text: deduped
    assert Document.objects.filter(tenant=world.tenant_a).count() == 1

    found = client.get(SEARCH, {"q": "train travel desk", "namespace": "hr", "k": 3})
    assert found.status_code == 200, found.json()
    results = found.json()["results"]
    assert results and results[0]["document_id"] == body["id"]
    assert "travel desk" in results[0]["text"]
    filtered = client.get(SEARCH, {"q": "train travel", "filter": '{"kind": "memo"}'})
    assert filtered.status_code == 200 and filtered.json()["results"] == []


def test_upload_a_text_file(world: World) -> None:
    client = client_for(world.tenant_a, ["write"])
    response = upload(client, "notes.md", b"# Notes\n\nThe wifi password rotates monthly.")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["title"], body["namespace"]) == ("notes.md", "files")
    assert body["metadata"] == {"kind": "upload"}


@pytest.mark.parametrize(
    ("name", "data", "content_type", "code"),
    [
        ("image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png", "unsupported_type"),
        ("report.pdf", b"%PDF-1.7 ...", "application/pdf", "unsupported_type"),
        ("data.txt", b"text\x00with\x00nul bytes", "text/plain", "binary_file"),
        ("latin1.txt", "caf\u00e9 cr\u00e8me".encode("latin-1"), "text/plain", "binary_file"),
        ("empty.txt", b"   \n\n ", "text/plain", "empty_document"),
    ],
)
def test_uploads_memory_does_not_take_are_refused_with_a_reason(
    world: World, name: str, data: bytes, content_type: str, code: str
) -> None:
    response = upload(client_for(world.tenant_a, ["write"]), name, data, content_type)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code
    assert not Document.objects.exists()


def test_an_enormous_document_is_refused_413(world: World, settings: Any) -> None:
    settings.WARDEN_MEMORY_MAX_DOCUMENT_BYTES = 1000
    client = client_for(world.tenant_a, ["write"])
    response = upload(client, "big.txt", b"word " * 400)
    assert response.status_code == 413 and response.json()["code"] == "document_too_large"
    response = post_text(client, "word " * 400)
    assert response.status_code == 413 and response.json()["code"] == "document_too_large"
    assert not Chunk.objects.exists()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"text": "x", "namespace": "Bad Namespace!"}, "validation_error"),
        ({"text": "x", "metadata": ["not", "an", "object"]}, "validation_error"),
        ({"text": "x", "metadata": None}, "validation_error"),
        ({"text": "x", "surprise": 1}, "unknown_field"),
        ({"text": 5}, "validation_error"),
        ({}, "validation_error"),
    ],
)
def test_bad_ingest_bodies_are_400(world: World, body: dict[str, Any], code: str) -> None:
    response = client_for(world.tenant_a, ["write"]).post(DOCS, body, format="json")
    assert response.status_code == 400 and response.json()["code"] == code


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "validation_error"),
        ({"q": "x", "k": "0"}, "validation_error"),
        ({"q": "x", "k": "500"}, "validation_error"),
        ({"q": "x", "filter": "{not json"}, "invalid_memory_query"),
        ({"q": "x", "filter": "[1]"}, "invalid_memory_query"),
        ({"q": "x", "filter": '{"a": {"nested": 1}}'}, "invalid_memory_query"),
        ({"q": "x", "namespace": "UP"}, "validation_error"),
    ],
)
def test_bad_searches_are_400(world: World, params: dict[str, str], code: str) -> None:
    response = client_for(world.tenant_a, ["read"]).get(SEARCH, params)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code


def test_viewers_search_writers_ingest(world: World, bob_client: APIClient) -> None:
    reader = client_for(world.tenant_a, ["read"])
    assert post_text(reader).status_code == 403
    assert post_text(bob_client).status_code == 403  # a member: memory feeds every agent
    assert not Document.objects.exists()
    document = post_text(client_for(world.tenant_a, ["write"])).json()
    assert reader.get(SEARCH, {"q": "travel"}).status_code == 200
    assert reader.get(f"{DOCS}/{document['id']}").status_code == 200
    assert reader.delete(f"{DOCS}/{document['id']}").status_code == 403
    assert bob_client.get(SEARCH, {"q": "travel"}).status_code == 200


def test_another_tenant_gets_404_and_finds_nothing(world: World) -> None:
    document = post_text(client_for(world.tenant_a, ["write"])).json()
    other = client_for(world.tenant_b, ["admin"])
    assert other.get(f"{DOCS}/{document['id']}").status_code == 404
    assert other.delete(f"{DOCS}/{document['id']}").status_code == 404
    assert other.get(DOCS).json()["results"] == []
    assert other.get(SEARCH, {"q": "travel desk train"}).json()["results"] == []
    assert Document.objects.filter(id=document["id"]).exists()
    anonymous = APIClient().get(SEARCH, {"q": "travel"})
    assert anonymous.status_code in (401, 403)


def test_search_says_503_while_the_embedder_is_down(
    world: World, embedding_server: EmbeddingServer
) -> None:
    services.document_ingest(tenant=world.tenant_a, text=HANDBOOK, title="handbook")
    client = client_for(world.tenant_a, ["read"])
    assert client.get(SEARCH, {"q": "travel"}).status_code == 200
    embedding_server.down = True
    response = client.get(SEARCH, {"q": "travel"})
    assert response.status_code == 503, response.content
    assert response.json()["code"] == "embedder_unavailable"
    assert int(response["Retry-After"]) > 0


@pytest.mark.parametrize("field", ["title", "metadata", "namespace"])
def test_an_upload_with_a_nul_in_a_field_is_refused_as_a_json_body_would_be(
    world: World, field: str
) -> None:
    client = client_for(world.tenant_a, ["write"])
    fields = {"namespace": "files", "metadata": "{}", "title": "Notes", field: "bad\x00value"}
    file = SimpleUploadedFile("notes.txt", b"Some notes.", content_type="text/plain")

    response = client.post(DOCS, {"file": file, **fields}, format="multipart")
    as_json = post_text(client, "Some notes.", title="bad\x00value")

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_characters" == as_json.json()["code"]
    assert not Document.objects.filter(tenant=world.tenant_a).exists()
