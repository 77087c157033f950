"""Agents, sessions, turns and their action graphs. Views translate HTTP; services decide."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import transaction
from django.db.models import ProtectedError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.agents import audit, replay, selectors, services
from apps.agents.api import serializers as s
from apps.agents.models import Agent, AgentSession, Turn
from apps.budgets.services.budgets import budgets_delete_for_agent
from apps.core.api.schema import error_responses
from apps.core.api.views import (
    PaginatedListMixin,
    authenticated_user,
    bool_query_param,
    get_or_404,
    paginated,
)
from apps.core.exceptions import Conflict, InvalidInput
from apps.core.redaction import redact_payload
from apps.llm.models import ModelEndpoint
from apps.tenants.authz import Permission, allows
from apps.tenants.permissions import (
    IsTenantMember,
    IsTenantOperatorForWrites,
    request_identity,
)


def _endpoints(request: Request, ids: list[uuid.UUID] | None) -> list[ModelEndpoint] | None:
    if ids is None:
        return None
    tenant = request_identity(request).tenant
    found = list(ModelEndpoint.objects.filter(tenant=tenant, id__in=ids))
    if len(found) != len(set(ids)):
        raise InvalidInput("Unknown model endpoint in allowed_endpoints.", code="unknown_endpoint")
    return found


_SLUG_TAKEN = error_responses(409, _409="`slug_taken`: the tenant has an agent with that slug.")


class AgentListApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantOperatorForWrites]

    @extend_schema(responses=s.AgentSerializer(many=True), summary="List agents")
    def get(self, request: Request) -> Response:
        tenant = request_identity(request).tenant
        return paginated(request, self, selectors.agent_list(tenant=tenant), s.AgentSerializer)

    @extend_schema(
        request=s.AgentInputSerializer,
        responses={201: s.AgentSerializer, **_SLUG_TAKEN},
        summary="Create an agent",
    )
    def post(self, request: Request) -> Response:
        data = s.AgentInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        endpoints = _endpoints(request, fields.pop("allowed_endpoints", None))
        agent = services.agent_save(
            tenant=request_identity(request).tenant, allowed_endpoints=endpoints, **fields
        )
        return Response(s.AgentSerializer(agent).data, status=status.HTTP_201_CREATED)


class AgentDetailApi(APIView):
    permission_classes = [IsTenantOperatorForWrites]

    def _get(self, request: Request, agent_id: uuid.UUID) -> Agent:
        tenant = request_identity(request).tenant
        return get_or_404(lambda: selectors.agent_get(tenant=tenant, agent_id=agent_id), "agent")

    @extend_schema(responses=s.AgentSerializer, summary="Get an agent")
    def get(self, request: Request, agent_id: uuid.UUID) -> Response:
        return Response(s.AgentSerializer(self._get(request, agent_id)).data)

    @extend_schema(
        request=s.AgentInputSerializer,
        responses={200: s.AgentSerializer, **_SLUG_TAKEN},
        summary="Change an agent",
    )
    def patch(self, request: Request, agent_id: uuid.UUID) -> Response:
        agent = self._get(request, agent_id)
        data = s.AgentInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        endpoints = _endpoints(request, fields.pop("allowed_endpoints", None))
        agent = services.agent_save(
            tenant=agent.tenant, agent=agent, allowed_endpoints=endpoints, **fields
        )
        return Response(s.AgentSerializer(agent).data)

    @extend_schema(
        responses={
            204: None,
            **error_responses(409, _409="`agent_in_use`: it has sessions; disable it instead."),
        },
        summary="Delete an agent without sessions",
    )
    def delete(self, request: Request, agent_id: uuid.UUID) -> Response:
        agent = self._get(request, agent_id)
        try:
            with transaction.atomic():
                agent.delete()
                # Its budgets name it by id (no foreign key across the layers): they go too.
                budgets_delete_for_agent(tenant_id=agent.tenant_id, agent_id=agent_id)
        except ProtectedError as exc:
            raise Conflict(
                "This agent has sessions; disable it (is_active=false) instead.",
                code="agent_in_use",
            ) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


def _redaction(request: Request) -> dict[str, object]:
    """Serializer context: tool arguments, results and turn texts unredacted for admins only."""
    identity = request_identity(request)
    return s.redaction_context(unredacted=allows(identity, Permission.TENANT_ADMINISTER))


def _session(request: Request, session_id: uuid.UUID) -> AgentSession:
    identity = request_identity(request)
    return get_or_404(
        lambda: selectors.session_get(identity=identity, session_id=session_id), "session"
    )


def _turn(request: Request, turn_id: uuid.UUID) -> Turn:
    identity = request_identity(request)
    return get_or_404(lambda: selectors.turn_get(identity=identity, turn_id=turn_id), "turn")


class SessionListApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.SESSION_READ, "POST": Permission.SESSION_MANAGE}

    @extend_schema(responses=s.SessionSerializer(many=True), summary="List sessions")
    def get(self, request: Request) -> Response:
        identity = request_identity(request)
        return paginated(
            request, self, selectors.session_list(identity=identity), s.SessionSerializer
        )

    @extend_schema(
        request=s.SessionCreateSerializer,
        responses={
            201: s.SessionSerializer,
            **error_responses(
                404, 409, _404="No such `agent`.", _409="`agent_inactive`: the agent is disabled."
            ),
        },
        summary="Start a session with an agent",
    )
    def post(self, request: Request) -> Response:
        data = s.SessionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        tenant = request_identity(request).tenant
        agent_id = fields.pop("agent")
        agent = get_or_404(lambda: selectors.agent_get(tenant=tenant, agent_id=agent_id), "agent")
        session = services.session_create(
            tenant=tenant, agent=agent, user=authenticated_user(request), **fields
        )
        return Response(s.SessionSerializer(session).data, status=status.HTTP_201_CREATED)


class SessionDetailApi(APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.SESSION_READ}

    @extend_schema(responses=s.SessionSerializer, summary="Get a session")
    def get(self, request: Request, session_id: uuid.UUID) -> Response:
        return Response(s.SessionSerializer(_session(request, session_id)).data)


class SessionCloseApi(APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"POST": Permission.SESSION_MANAGE}

    @extend_schema(
        request=None,
        responses=s.SessionSerializer,
        summary="Close a session (queued turns are cancelled)",
        parameters=[
            OpenApiParameter(
                "cancel", bool, description="true: the session ends `cancelled`, not `closed`."
            )
        ],
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        cancel = bool(bool_query_param(request, "cancel"))
        session = services.session_close(session=_session(request, session_id), cancel=cancel)
        return Response(s.SessionSerializer(session).data)


class SessionStateApi(APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.SESSION_READ, "PUT": Permission.SESSION_MANAGE}

    @extend_schema(
        responses=s.SessionStateOutSerializer,
        summary="The session's short-term state (empty after its TTL)",
    )
    def get(self, request: Request, session_id: uuid.UUID) -> Response:
        session = _session(request, session_id)
        return Response(
            {
                "state": services.session_state_get(session=session),
                "expires_at": session.state_expires_at,
            }
        )

    @extend_schema(
        request=s.SessionStateSerializer,
        responses=s.SessionStateOutSerializer,
        summary="Replace the session's short-term state",
    )
    def put(self, request: Request, session_id: uuid.UUID) -> Response:
        session = _session(request, session_id)
        data = s.SessionStateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = services.session_state_set(
            session=session,
            state=data.validated_data["state"],
            ttl_seconds=data.validated_data.get("ttl_seconds"),
        )
        return Response({"state": session.state, "expires_at": session.state_expires_at})


class TurnListApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.SESSION_READ, "POST": Permission.TURN_START}

    @extend_schema(responses=s.TurnSerializer(many=True), summary="List a session's turns")
    def get(self, request: Request, session_id: uuid.UUID) -> Response:
        session = _session(request, session_id)
        return paginated(
            request,
            self,
            selectors.turn_list(session=session),
            s.TurnSerializer,
            _redaction(request),
        )

    @extend_schema(
        request=s.TurnCreateSerializer,
        responses={
            202: s.TurnSerializer,
            **error_responses(
                409,
                503,
                _409="`session_not_active`, `agent_inactive`, `too_many_queued_turns` "
                "(WARDEN_MAX_QUEUED_TURNS), `budget_exceeded`: a cap the turn would spend "
                "against has no room left (`details` name it and when it resets), or "
                "`endpoint_unpriced`: only endpoints with no price could serve the agent.",
                _503="`turn_backlog_full`: the tenant has WARDEN_MAX_QUEUED_TURNS_PER_TENANT "
                "turns waiting for a worker; `backpressure`: the workers are too far behind "
                "(with `Retry-After`); `budget_unavailable`: budgets can't be checked now.",
            ),
        },
        summary="Send a message: queues a turn and answers 202 at once",
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        session = _session(request, session_id)
        data = s.TurnCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        turn = services.turn_enqueue(
            session=session,
            message=data.validated_data["message"],
            requested_by=authenticated_user(request),
            allow_model_upgrade=data.validated_data["allow_model_upgrade"],
        )
        return Response(
            s.TurnSerializer(turn, context=_redaction(request)).data,
            status=status.HTTP_202_ACCEPTED,
        )


class TurnDetailApi(APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.SESSION_READ}

    @extend_schema(responses=s.TurnSerializer, summary="Get a turn")
    def get(self, request: Request, turn_id: uuid.UUID) -> Response:
        return Response(s.TurnSerializer(_turn(request, turn_id), context=_redaction(request)).data)


class TurnCancelApi(APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"POST": Permission.TURN_CANCEL}

    @extend_schema(
        request=None,
        responses={
            200: s.TurnSerializer,
            **error_responses(409, _409="`turn_not_cancellable`: it has finished."),
        },
        summary="Cancel a turn",
    )
    def post(self, request: Request, turn_id: uuid.UUID) -> Response:
        turn = services.turn_cancel(turn=_turn(request, turn_id))
        return Response(s.TurnSerializer(turn, context=_redaction(request)).data)


class TurnStepsApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.SESSION_READ}

    @extend_schema(
        responses=s.NodeWithScratchpadSerializer(many=True),
        summary="The turn's action graph (scratchpad for operators only)",
        description="Tool arguments and results (`inputs`, `outputs`) are redacted for roles "
        "below admin; the scratchpad is redacted for everyone who sees it.",
    )
    def get(self, request: Request, turn_id: uuid.UUID) -> Response:
        turn = _turn(request, turn_id)
        identity = request_identity(request)
        private = allows(identity, Permission.REASONING_READ)
        serializer = s.NodeWithScratchpadSerializer if private else s.NodeSerializer
        return paginated(
            request, self, selectors.node_list(turn=turn), serializer, _redaction(request)
        )


class SessionReplayApi(APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"POST": Permission.SESSION_REPLAY}

    @extend_schema(
        request=s.ReplayInputSerializer,
        responses={
            200: s.ReplayReportSerializer,
            **error_responses(
                404,
                409,
                _404="No such `session`.",
                _409="`replay_incomplete`: the recorded data is incomplete or damaged "
                "(`details` name the turn and node).",
            ),
        },
        summary="Replay a recorded session from its log, with no live calls",
        description="Runs in the request, for sessions up to WARDEN_REPLAY_MAX_NODES recorded "
        "nodes and WARDEN_REPLAY_MAX_TURNS turns (larger: 400 `replay_too_large`; use "
        "`manage.py replay`). Nothing is written. `reproduces` says whether every turn "
        "came out as recorded; `divergence` is the first place it did not.",
    )
    def post(self, request: Request, session_id: uuid.UUID) -> Response:
        session = _session(request, session_id)
        data = s.ReplayInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        report = replay.session_replay(
            session=session,
            policies=data.validated_data["policies"],
            max_nodes=settings.WARDEN_REPLAY_MAX_NODES,
            max_turns=settings.WARDEN_REPLAY_MAX_TURNS,
        )
        body = report.as_dict()
        if body.get("divergence") and not allows(
            request_identity(request), Permission.TENANT_ADMINISTER
        ):
            # Recorded vs replayed values quote tool arguments and results: redacted below
            # admin, like the steps they come from.
            body["divergence"] = redact_payload(body["divergence"], session.tenant_id)
        return Response(s.ReplayReportSerializer(body).data)


class SessionAuditApi(APIView):
    permission_classes = [IsTenantMember]
    required_permissions = {"GET": Permission.AUDIT_READ}

    @extend_schema(
        parameters=[s.AuditQuerySerializer],
        responses=s.AuditPageSerializer,
        summary="The session's hash-chained event log, for archiving (admins)",
        description="Events in chain order with their hashes and the canonical text each "
        "hash is the SHA-256 of (README: Audit log). Damage is reported in `damage` and per "
        "event (`intact`, `linked`), never as an error.",
    )
    def get(self, request: Request, session_id: uuid.UUID) -> Response:
        session = _session(request, session_id)
        query = s.AuditQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = audit.session_audit_page(
            session=session,
            after_seq=query.validated_data["after_seq"],
            limit=query.validated_data["limit"],
        )
        head_seq, head_hash = page.head or (0, audit.GENESIS)
        return Response(
            {
                "session": page.session_id,
                "head": {"seq": head_seq, "hash": head_hash},
                "events": [
                    {
                        "seq": link.seq,
                        "id": link.id,
                        "type": link.type,
                        "turn": link.turn_id,
                        "created_at": link.created_at,
                        "payload": link.payload,
                        "prev_hash": link.prev_hash,
                        "hash": link.hash,
                        "canonical": link.canonical,
                        "intact": link.intact,
                        "linked": linked,
                    }
                    for link, linked in zip(page.links, page.linked, strict=True)
                ],
                "next_after_seq": page.next_after_seq,
                "damage": (
                    {
                        "problem": page.damage.problem,
                        "seq": page.damage.seq,
                        "event_id": page.damage.event_id,
                        "detail": page.damage.detail,
                    }
                    if page.damage
                    else None
                ),
            }
        )
