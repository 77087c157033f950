from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.core.api.serializers import StrictInputSerializer
from apps.memory.models import Document
from apps.memory.selectors import MAX_K

NAMESPACE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class DocumentSerializer(serializers.ModelSerializer[Document]):
    class Meta:
        model = Document
        fields = [
            "id",
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
        read_only_fields = fields


class DocumentTextInputSerializer(StrictInputSerializer):
    """JSON body: the text itself."""

    text = serializers.CharField(trim_whitespace=False)
    title = serializers.CharField(max_length=255, required=False)
    namespace = serializers.RegexField(NAMESPACE_PATTERN, required=False, default="default")
    metadata = serializers.DictField(
        child=serializers.JSONField(allow_null=True), required=False, default=dict
    )


class DocumentUploadInputSerializer(StrictInputSerializer):
    """multipart/form-data: a file, and `metadata` as a JSON object in a string."""

    # An empty file is memory's refusal (`empty_document`), not a malformed upload.
    file = serializers.FileField(allow_empty_file=True)
    title = serializers.CharField(max_length=255, required=False)
    namespace = serializers.RegexField(NAMESPACE_PATTERN, required=False, default="default")
    metadata = serializers.CharField(required=False, default="{}", max_length=8192)


class SearchQuerySerializer(serializers.Serializer[Any]):
    # Untrimmed: a blank query is the service's refusal (`invalid_memory_query`).
    q = serializers.CharField(max_length=2000, trim_whitespace=False)
    k = serializers.IntegerField(min_value=1, max_value=MAX_K, required=False, default=5)
    namespace = serializers.RegexField(NAMESPACE_PATTERN, required=False)
    filter = serializers.CharField(
        required=False,
        allow_blank=True,  # blank: no filter
        max_length=2000,
        help_text='Metadata the chunks must contain, a JSON object: {"kind": "handbook"}.',
    )


class SearchHitSerializer(serializers.Serializer[Any]):
    chunk_id = serializers.UUIDField()
    document_id = serializers.UUIDField()
    title = serializers.CharField()
    namespace = serializers.CharField()
    position = serializers.IntegerField()
    text = serializers.CharField()
    metadata = serializers.JSONField()
    score = serializers.FloatField(help_text="Cosine similarity: 1 is identical.")


class SearchResultSerializer(serializers.Serializer[Any]):
    query = serializers.CharField()
    results = SearchHitSerializer(many=True)
