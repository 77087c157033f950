"""Long-term memory over REST. Everyone in the tenant searches and lists (`memory.read`);
operators, admins and owners (write-scoped keys) ingest and delete (`memory.write`).

`POST /memory/documents` takes JSON `{"text", "title"?, "namespace"?, "metadata"?}` or a
multipart upload (`file`, `namespace`, `metadata` as a JSON string). It answers 201 with a
new document, 200 with the one that holds the same text already, 202 when the embedding is
queued (a large document, or the embedder down: `state` pending/waiting, resumed by the
worker). Refused: 413 `document_too_large`; 400 `binary_file`, `unsupported_type`,
`empty_document`, `invalid_memory_query` (namespace/metadata/filter). Search answers 503
`embedder_unavailable` (with Retry-After) while the embedder is down.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api.errors import error_body
from apps.core.api.parsers import LimitedJSONParser, LimitedMultiPartParser
from apps.core.api.schema import error_responses
from apps.core.api.views import PaginatedListMixin, get_or_404, paginated
from apps.memory import selectors, services
from apps.memory.api import serializers as s
from apps.memory.exceptions import DocumentTooLarge, MemoryQueryInvalid
from apps.memory.models import Document, DocumentState
from apps.tenants.authz import Permission
from apps.tenants.permissions import IsTenantMember, request_identity


def _document(request: Request, document_id: uuid.UUID) -> Document:
    tenant = request_identity(request).tenant
    return get_or_404(
        lambda: selectors.document_get(tenant=tenant, document_id=document_id), "document"
    )


def _too_large(exc: DocumentTooLarge) -> Response:
    return Response(error_body(exc.code, exc.message, exc.details), status=413)


class DocumentListApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.MEMORY_READ, "POST": Permission.MEMORY_WRITE}
    parser_classes = [LimitedJSONParser, LimitedMultiPartParser]

    @extend_schema(
        responses=s.DocumentSerializer(many=True),
        parameters=[OpenApiParameter("namespace", str, pattern=s.NAMESPACE_PATTERN)],
        summary="List memory documents",
    )
    def get(self, request: Request) -> Response:
        tenant = request_identity(request).tenant
        namespace = request.query_params.get("namespace")
        if namespace is not None:
            services.namespace_checked(namespace)
        return paginated(
            request,
            self,
            selectors.document_list(tenant=tenant, namespace=namespace),
            s.DocumentSerializer,
        )

    @extend_schema(
        request={
            "application/json": s.DocumentTextInputSerializer,
            "multipart/form-data": s.DocumentUploadInputSerializer,
        },
        responses={
            200: s.DocumentSerializer,
            201: s.DocumentSerializer,
            202: s.DocumentSerializer,
            **error_responses(413, _413="`document_too_large` or `payload_too_large`."),
        },
        summary="Ingest a document into memory",
    )
    def post(self, request: Request) -> Response:
        tenant = request_identity(request).tenant
        try:
            if (request.content_type or "").startswith("multipart/"):
                upload = s.DocumentUploadInputSerializer(data=request.data)
                upload.is_valid(raise_exception=True)
                data = upload.validated_data
                file = data["file"]
                name = str(file.name or "upload")
                services.type_checked(filename=name, content_type=file.content_type)
                services.size_checked(file.size or 0, name=name)
                text = services.text_decoded(file.read(), name=name)
                try:
                    metadata = json.loads(data["metadata"])
                except ValueError:
                    raise MemoryQueryInvalid(
                        "metadata must be a JSON object.", details={"field": "metadata"}
                    ) from None
                title = data.get("title") or name
            else:
                body = s.DocumentTextInputSerializer(data=request.data)
                body.is_valid(raise_exception=True)
                data = body.validated_data
                text, metadata = data["text"], data["metadata"]
                title = data.get("title") or text.strip().split("\n", 1)[0][:80] or "untitled"
            result = services.document_ingest(
                tenant=tenant,
                text=text,
                title=title,
                namespace=data["namespace"],
                metadata=metadata,
            )
        except DocumentTooLarge as exc:
            return _too_large(exc)
        document = result.document
        code: int
        if document.state != DocumentState.READY:
            code = status.HTTP_202_ACCEPTED
        else:
            code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(s.DocumentSerializer(document).data, status=code)


class DocumentDetailApi(APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.MEMORY_READ, "DELETE": Permission.MEMORY_WRITE}

    @extend_schema(responses=s.DocumentSerializer, summary="Get a memory document")
    def get(self, request: Request, document_id: uuid.UUID) -> Response:
        return Response(s.DocumentSerializer(_document(request, document_id)).data)

    @extend_schema(responses={204: None}, summary="Delete a memory document and its chunks")
    def delete(self, request: Request, document_id: uuid.UUID) -> Response:
        services.document_delete(document=_document(request, document_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SearchApi(APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.MEMORY_READ}

    @extend_schema(
        parameters=[s.SearchQuerySerializer],
        responses={200: s.SearchResultSerializer, **error_responses(503)},
        summary="Search memory (tenant-scoped, top-k by cosine similarity)",
    )
    def get(self, request: Request) -> Response:
        params = s.SearchQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(params.validated_data)
        filters = None
        if data.get("filter"):
            try:
                filters = json.loads(data["filter"])
            except ValueError:
                raise MemoryQueryInvalid(
                    "filter must be a JSON object.", details={"field": "filter"}
                ) from None
        found = services.memory_search(
            tenant_id=request_identity(request).tenant.id,
            query=data["q"],
            k=data["k"],
            namespace=data.get("namespace"),
            metadata=filters,
        )
        return Response(
            s.SearchResultSerializer(
                {"query": data["q"], "results": [hit.__dict__ for hit in found]}
            ).data
        )
