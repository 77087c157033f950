from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api.schema import error_responses
from apps.core.api.views import PaginatedListMixin, get_or_404, paginated
from apps.llm import selectors, services
from apps.llm.api.serializers import (
    EndpointInputSerializer,
    EndpointSerializer,
    endpoint_serializer_for,
)
from apps.llm.models import ModelEndpoint
from apps.tenants.permissions import IsTenantOperatorForWrites, request_identity

_NAME_TAKEN = error_responses(409, _409="`name_taken`: the tenant has an endpoint of that name.")


class EndpointListApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantOperatorForWrites]

    @extend_schema(responses=EndpointSerializer(many=True), summary="List model endpoints")
    def get(self, request: Request) -> Response:
        identity = request_identity(request)
        return paginated(
            request,
            self,
            selectors.endpoint_list(tenant=identity.tenant),
            endpoint_serializer_for(identity),
        )

    @extend_schema(
        request=EndpointInputSerializer,
        responses={
            201: EndpointSerializer,
            **_NAME_TAKEN,
        },
        summary="Register a model endpoint",
    )
    def post(self, request: Request) -> Response:
        data = EndpointInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        api_key = fields.pop("api_key", None)
        identity = request_identity(request)
        endpoint = services.endpoint_save(tenant=identity.tenant, api_key=api_key, **fields)
        serializer = endpoint_serializer_for(identity)
        return Response(serializer(endpoint).data, status=status.HTTP_201_CREATED)


class EndpointDetailApi(APIView):
    permission_classes = [IsTenantOperatorForWrites]

    def _get(self, request: Request, endpoint_id: uuid.UUID) -> ModelEndpoint:
        tenant = request_identity(request).tenant
        return get_or_404(
            lambda: selectors.endpoint_get(tenant=tenant, endpoint_id=endpoint_id),
            "model endpoint",
        )

    @extend_schema(responses=EndpointSerializer, summary="Get a model endpoint")
    def get(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        serializer = endpoint_serializer_for(request_identity(request))
        return Response(serializer(self._get(request, endpoint_id)).data)

    @extend_schema(
        request=EndpointInputSerializer,
        responses={
            200: EndpointSerializer,
            **_NAME_TAKEN,
        },
        summary="Change a model endpoint",
    )
    def patch(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        endpoint = self._get(request, endpoint_id)
        data = EndpointInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        api_key = fields.pop("api_key", None)
        endpoint = services.endpoint_save(
            tenant=endpoint.tenant, endpoint=endpoint, api_key=api_key, **fields
        )
        return Response(endpoint_serializer_for(request_identity(request))(endpoint).data)

    @extend_schema(responses={204: None}, summary="Delete a model endpoint")
    def delete(self, request: Request, endpoint_id: uuid.UUID) -> Response:
        services.endpoint_delete(endpoint=self._get(request, endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
