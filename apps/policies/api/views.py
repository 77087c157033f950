"""Policies over REST. Operators, admins and owners read them and evaluate one on a
hand-written input; admins and owners (admin-scoped keys) create, change and delete them.

A source the engine cannot compile answers 400 `policy_invalid` with the compiler's message,
line and column in `details`; one over WARDEN_POLICY_MAX_SOURCE_BYTES answers 400
`policy_too_large`; a name already used in the tenant 409 `policy_name_taken`; an engine
that cannot check the source now (OPA down) 503 `policy_engine_unavailable` — nothing
unchecked is saved.
"""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api.schema import error_responses
from apps.core.api.views import PaginatedListMixin, authenticated_user, get_or_404, paginated
from apps.policies import selectors, services, whatif
from apps.policies.api.serializers import (
    EvaluateInputSerializer,
    EvaluationSerializer,
    PolicyInputSerializer,
    PolicySerializer,
    PolicyVersionSerializer,
    WhatIfInputSerializer,
    WhatIfReportSerializer,
)
from apps.policies.models import Policy
from apps.tenants.authz import Permission
from apps.tenants.permissions import IsTenantMember, request_identity


def _policy(request: Request, policy_id: uuid.UUID) -> Policy:
    tenant = request_identity(request).tenant
    return get_or_404(lambda: selectors.policy_get(tenant=tenant, policy_id=policy_id), "policy")


def _author(request: Request) -> services.Author:
    identity = request_identity(request)
    if identity.via == "api_key" and identity.api_key is not None:
        key = identity.api_key
        return services.Author(user=None, label=f"API key {key.name} ({key.prefix}…)")
    return services.Author.of(authenticated_user(request))


class PolicyListApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.POLICY_READ, "POST": Permission.POLICY_WRITE}

    @extend_schema(responses=PolicySerializer(many=True), summary="List policies")
    def get(self, request: Request) -> Response:
        tenant = request_identity(request).tenant
        return paginated(request, self, selectors.policy_list(tenant=tenant), PolicySerializer)

    @extend_schema(
        request=PolicyInputSerializer,
        responses={201: PolicySerializer},
        summary="Create a policy (its version 1)",
    )
    def post(self, request: Request) -> Response:
        data = PolicyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        policy = services.policy_create(
            tenant=request_identity(request).tenant,
            author=_author(request),
            **dict(data.validated_data),
        )
        return Response(PolicySerializer(policy).data, status=status.HTTP_201_CREATED)


class PolicyDetailApi(APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {
        "GET": Permission.POLICY_READ,
        "PATCH": Permission.POLICY_WRITE,
        "DELETE": Permission.POLICY_WRITE,
    }

    @extend_schema(responses=PolicySerializer, summary="Get a policy")
    def get(self, request: Request, policy_id: uuid.UUID) -> Response:
        return Response(PolicySerializer(_policy(request, policy_id)).data)

    @extend_schema(
        request=PolicyInputSerializer,
        responses=PolicySerializer,
        summary="Change a policy (every save is a new version)",
    )
    def patch(self, request: Request, policy_id: uuid.UUID) -> Response:
        policy = _policy(request, policy_id)
        data = PolicyInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        if "entry_point" not in request.data:
            changes.pop("entry_point", None)  # the serializer's default is for creation only
        policy = services.policy_update(policy=policy, author=_author(request), **changes)
        return Response(PolicySerializer(policy).data)

    @extend_schema(responses={204: None}, summary="Delete a policy and its versions")
    def delete(self, request: Request, policy_id: uuid.UUID) -> Response:
        services.policy_delete(policy=_policy(request, policy_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class PolicyVersionListApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.POLICY_READ}

    @extend_schema(
        responses=PolicyVersionSerializer(many=True), summary="A policy's versions, newest first"
    )
    def get(self, request: Request, policy_id: uuid.UUID) -> Response:
        policy = _policy(request, policy_id)
        return paginated(
            request, self, selectors.policy_version_list(policy=policy), PolicyVersionSerializer
        )


class PolicyEvaluateApi(APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"POST": Permission.POLICY_READ}

    @extend_schema(
        request=EvaluateInputSerializer,
        responses=EvaluationSerializer,
        summary="The policy's decision for a hand-written input",
        description="Evaluates the current version whatever the policy's mode. An engine "
        "error or timeout answers 200 with outcome `deny` and `error` set, as a real decision "
        "would (fail closed).",
    )
    def post(self, request: Request, policy_id: uuid.UUID) -> Response:
        policy = _policy(request, policy_id)
        data = EvaluateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        evaluation = services.policy_evaluate(policy=policy, input_doc=data.validated_data["input"])
        return Response(EvaluationSerializer(evaluation).data)


class PolicyWhatIfApi(APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"POST": Permission.POLICY_READ}

    @extend_schema(
        request=WhatIfInputSerializer,
        responses={
            200: WhatIfReportSerializer,
            **error_responses(404, _404="No such `policy` (or `version_not_found`)."),
        },
        summary="What a policy version would have decided on recorded tool calls",
        description="Evaluates the version (default: the newest not enforced) on the inputs "
        "recorded with each policy decision of the given `sessions` (or `since` a time), "
        "combined with what the other enforced policies decided then, and lists every "
        "decision that would change. Reads at most WARDEN_WHATIF_MAX_DECISIONS decisions per "
        "request (`truncated`, `next_after`). A version that fails to evaluate on any "
        "recorded input answers 400 `policy_eval_failed` (fail closed); unknown session ids "
        "400 `unknown_session`.",
    )
    def post(self, request: Request, policy_id: uuid.UUID) -> Response:
        policy = _policy(request, policy_id)
        data = WhatIfInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        report = whatif.policy_what_if(
            policy=policy,
            version_number=values.get("version"),
            session_ids=values.get("sessions"),
            since=values.get("since"),
            after=values.get("after"),
            limit=values.get("limit"),
        )
        return Response(WhatIfReportSerializer(report.as_dict()).data)
