"""Memory in the console: a tenant admin sees its documents and their chunks' text, read-only
(ingestion goes through the API or `manage.py memory ingest`, which check and embed); deleting
a document deletes its chunks (the same service as the API)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.memory import services
from apps.memory.models import Chunk, Document
from apps.tenants.admin_scoping import TenantScopedAdmin


class ChunkInline(admin.TabularInline):
    model = Chunk
    fields = ["position", "text"]
    readonly_fields = ["position", "text"]
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Document)
class DocumentAdmin(TenantScopedAdmin):
    list_display = ["title", "tenant", "namespace", "state", "chunk_count", "created_at"]
    list_filter = ["state", "namespace"]
    search_fields = ["title"]
    readonly_fields = [
        "tenant",
        "namespace",
        "title",
        "content_hash",
        "metadata",
        "size_bytes",
        "chunk_count",
        "state",
        "detail",
        "embedding_model",
        "created_at",
        "updated_at",
    ]
    inlines = [ChunkInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        services.document_delete(document=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in queryset:
            services.document_delete(document=document)
