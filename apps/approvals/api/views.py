"""Approvals over REST: list and read (any member), approve and reject (approvers, admins,
owners, admin-scoped keys). Views translate HTTP; `services.approval_decide` decides."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.approvals import selectors, services
from apps.approvals.api import serializers as s
from apps.approvals.models import DecidedVia
from apps.core.api.views import PaginatedListMixin, authenticated_user, get_or_404, paginated
from apps.tenants.authz import Permission
from apps.tenants.permissions import IsTenantMember, request_identity


class ApprovalListApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.TENANT_READ}

    @extend_schema(
        parameters=[
            OpenApiParameter("status", enum=["pending", "approved", "rejected", "expired"]),
            OpenApiParameter("turn", type=uuid.UUID),
        ],
        responses=s.ApprovalSerializer(many=True),
        summary="List approval requests (newest first)",
    )
    def get(self, request: Request) -> Response:
        query = s.ApprovalListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        tenant = request_identity(request).tenant
        approvals = selectors.approval_list(
            tenant=tenant,
            status=query.validated_data.get("status"),
            turn_id=query.validated_data.get("turn"),
        )
        return paginated(request, self, approvals, s.ApprovalSerializer)


class ApprovalDetailApi(APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.TENANT_READ}

    @extend_schema(responses=s.ApprovalSerializer, summary="Get an approval request")
    def get(self, request: Request, approval_id: uuid.UUID) -> Response:
        tenant = request_identity(request).tenant
        approval = get_or_404(
            lambda: selectors.approval_get(tenant=tenant, approval_id=approval_id),
            "approval request",
        )
        return Response(s.ApprovalSerializer(approval).data)


class _DecideApi(APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"POST": Permission.APPROVAL_DECIDE}
    approved: bool
    input_serializer: type[s.StrictInputSerializer]

    def post(self, request: Request, approval_id: uuid.UUID) -> Response:
        data = self.input_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        identity = request_identity(request)
        decider = services.Decider(
            identity=identity,
            via=DecidedVia.API,
            # An API key decides as the tenant's key, not as whoever created it.
            user=None if identity.via == "api_key" else authenticated_user(request),
        )
        approval = services.approval_decide(
            approval_id=approval_id,
            decider=decider,
            approved=self.approved,
            rationale=data.validated_data.get("rationale", ""),
        )
        return Response(s.ApprovalSerializer(approval).data)


class ApprovalApproveApi(_DecideApi):
    approved = True
    input_serializer = s.ApproveInputSerializer

    @extend_schema(
        request=s.ApproveInputSerializer,
        responses=s.ApprovalSerializer,
        summary="Approve: the parked call runs, once (409 already_decided / expired)",
    )
    def post(self, request: Request, approval_id: uuid.UUID) -> Response:
        return super().post(request, approval_id)


class ApprovalRejectApi(_DecideApi):
    approved = False
    input_serializer = s.RejectInputSerializer

    @extend_schema(
        request=s.RejectInputSerializer,
        responses=s.ApprovalSerializer,
        summary="Reject with a rationale: the call never runs and the model is told why",
    )
    def post(self, request: Request, approval_id: uuid.UUID) -> Response:
        return super().post(request, approval_id)
