"""Identity, tenant, members and API keys. Views only translate HTTP; services decide."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api.schema import error_responses
from apps.core.api.views import PaginatedListMixin, authenticated_user, get_or_404, paginated
from apps.tenants import selectors, services
from apps.tenants.api import serializers as s
from apps.tenants.authentication import (
    ApiKeyAuthentication,
    OidcJwtAuthentication,
    UserSessionAuthentication,
)
from apps.tenants.models import ApiKey, Invitation, Membership
from apps.tenants.permissions import (
    IsSignedInUser,
    IsTenantAdmin,
    IsTenantAdminForWrites,
    IsTenantMember,
    request_identity,
)


class MeApi(APIView):
    permission_classes = [IsTenantMember]

    @extend_schema(responses=s.MeSerializer, summary="The calling identity and its tenant")
    def get(self, request: Request) -> Response:
        identity = request_identity(request)
        user = request.user if request.user.is_authenticated else None
        return Response(
            {
                "via": identity.via,
                "tenant": s.TenantSerializer(identity.tenant).data,
                "roles": sorted(identity.roles),
                "scopes": sorted(identity.scopes),
                "user": {"id": user.pk, "username": user.get_username()} if user else None,
                "api_key": (
                    {"id": str(identity.api_key.id), "prefix": identity.api_key.prefix}
                    if identity.api_key
                    else None
                ),
            }
        )


class TenantApi(APIView):
    permission_classes = [IsTenantMember]

    @extend_schema(responses=s.TenantSerializer, summary="The current tenant")
    def get(self, request: Request) -> Response:
        return Response(s.TenantSerializer(request_identity(request).tenant).data)


class RedactionSettingsApi(APIView):
    """What the tenant scrubs from events, logs, Slack cards and API responses."""

    permission_classes = [IsTenantAdmin]

    @extend_schema(responses=s.RedactionSettingsSerializer, summary="The tenant's redaction")
    def get(self, request: Request) -> Response:
        row = selectors.redaction_settings_get(tenant=request_identity(request).tenant)
        return Response(s.RedactionSettingsSerializer(row).data)

    @extend_schema(
        request=s.RedactionSettingsInputSerializer,
        responses={
            200: s.RedactionSettingsSerializer,
            **error_responses(
                400,
                _400="`pattern_invalid`, `pattern_too_long`, `pattern_matches_empty`, "
                "`pattern_has_groups`, `pattern_global_flags`, `pattern_catastrophic` (nested "
                "quantifiers, or too slow on probe inputs), `pattern_name_invalid`, "
                "`pattern_name_taken`, `too_many_patterns`, `unknown_redaction_kind`.",
            ),
        },
        summary="Change the tenant's redaction (PII kinds, custom patterns)",
    )
    def patch(self, request: Request) -> Response:
        data = s.RedactionSettingsInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = services.redaction_settings_update(
            tenant=request_identity(request).tenant, **data.validated_data
        )
        return Response(s.RedactionSettingsSerializer(row).data)


class MemberListApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantAdminForWrites]

    @extend_schema(responses=s.MembershipSerializer(many=True), summary="List members")
    def get(self, request: Request) -> Response:
        tenant = request_identity(request).tenant
        return paginated(
            request, self, selectors.membership_list(tenant=tenant), s.MembershipSerializer
        )

    def http_method_not_allowed(  # type: ignore[override]  # DRF narrows it to a Request
        self, request: Request, *args: Any, **kwargs: Any
    ) -> Response:
        if request.method == "POST":
            # Attaching an existing account by name let an admin pull in anyone on the
            # platform (another tenant's owner, a superuser) and read their e-mail.
            raise MethodNotAllowed(
                "POST",
                detail="Members join by invitation: create one with POST /api/v1/invitations "
                "and give its token to the person, who accepts it with POST "
                "/api/v1/invitations/accept.",
                code="use_invitations",
            )
        return super().http_method_not_allowed(request, *args, **kwargs)


class MemberDetailApi(APIView):
    permission_classes = [IsTenantAdminForWrites]

    def _get(self, request: Request, membership_id: uuid.UUID) -> Membership:
        tenant = request_identity(request).tenant
        return get_or_404(
            lambda: selectors.membership_get(tenant=tenant, membership_id=membership_id),
            "member in this tenant",
        )

    @extend_schema(responses=s.MembershipSerializer, summary="Get a member")
    def get(self, request: Request, membership_id: uuid.UUID) -> Response:
        return Response(s.MembershipSerializer(self._get(request, membership_id)).data)

    @extend_schema(
        request=s.MembershipUpdateSerializer,
        responses={
            200: s.MembershipSerializer,
            **error_responses(
                403,
                409,
                _403="`permission_denied`, or `owner_required`: only an owner grants or "
                "changes the owner role.",
                _409="`last_owner`: a tenant keeps at least one owner.",
            ),
        },
        summary="Change a member's role",
    )
    def patch(self, request: Request, membership_id: uuid.UUID) -> Response:
        membership = self._get(request, membership_id)
        data = s.MembershipUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        if "role" in data.validated_data:
            membership = services.membership_update_role(
                membership=membership,
                role=data.validated_data["role"],
                actor_roles=request_identity(request).roles,
            )
        return Response(s.MembershipSerializer(membership).data)

    @extend_schema(
        responses={
            204: None,
            **error_responses(
                403,
                409,
                _403="`permission_denied`, or `owner_required`: only an owner removes an owner.",
                _409="`last_owner`: a tenant keeps at least one owner.",
            ),
        },
        summary="Remove a member",
    )
    def delete(self, request: Request, membership_id: uuid.UUID) -> Response:
        services.membership_remove(
            membership=self._get(request, membership_id),
            actor_roles=request_identity(request).roles,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyListApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantAdmin]

    @extend_schema(responses=s.ApiKeySerializer(many=True), summary="List API keys")
    def get(self, request: Request) -> Response:
        tenant = request_identity(request).tenant
        return paginated(request, self, selectors.api_key_list(tenant=tenant), s.ApiKeySerializer)

    @extend_schema(
        request=s.ApiKeyCreateSerializer,
        responses={201: s.ApiKeyCreatedSerializer},
        summary="Create an API key (the secret is in this response only)",
    )
    def post(self, request: Request) -> Response:
        data = s.ApiKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        identity = request_identity(request)
        key, raw = services.api_key_create(
            tenant=identity.tenant,
            name=data.validated_data["name"],
            scopes=data.validated_data["scopes"],
            expires_at=data.validated_data.get("expires_at"),
            created_by=authenticated_user(request),
        )
        body = s.ApiKeySerializer(key).data
        body["key"] = raw
        return Response(body, status=status.HTTP_201_CREATED)


class _ApiKeyApi(APIView):
    permission_classes = [IsTenantAdmin]

    def _get(self, request: Request, key_id: uuid.UUID) -> ApiKey:
        tenant = request_identity(request).tenant
        return get_or_404(
            lambda: selectors.api_key_get(tenant=tenant, key_id=key_id), "API key in this tenant"
        )

    def _revoke(self, request: Request, key_id: uuid.UUID) -> Response:
        key = services.api_key_revoke(key=self._get(request, key_id))
        return Response(s.ApiKeySerializer(key).data)


class ApiKeyDetailApi(_ApiKeyApi):
    @extend_schema(responses=s.ApiKeySerializer, summary="Get an API key (never its secret)")
    def get(self, request: Request, key_id: uuid.UUID) -> Response:
        return Response(s.ApiKeySerializer(self._get(request, key_id)).data)

    @extend_schema(
        responses={200: s.ApiKeySerializer},
        summary="Revoke an API key",
        description="The key stops working at once; the row stays readable (`revoked_at`) as "
        "the record of who had access, so a GET afterwards still finds it.",
    )
    def delete(self, request: Request, key_id: uuid.UUID) -> Response:
        return self._revoke(request, key_id)


class ApiKeyRevokeApi(_ApiKeyApi):
    @extend_schema(request=None, responses=s.ApiKeySerializer, summary="Revoke an API key")
    def post(self, request: Request, key_id: uuid.UUID) -> Response:
        return self._revoke(request, key_id)


class InvitationListApi(PaginatedListMixin, APIView):
    permission_classes = [IsTenantAdmin]

    @extend_schema(responses=s.InvitationSerializer(many=True), summary="List invitations")
    def get(self, request: Request) -> Response:
        tenant = request_identity(request).tenant
        return paginated(
            request, self, selectors.invitation_list(tenant=tenant), s.InvitationSerializer
        )

    @extend_schema(
        request=s.InvitationCreateSerializer,
        responses={
            201: s.InvitationCreatedSerializer,
            **error_responses(
                403, _403="`permission_denied`, or `owner_required` to invite an owner."
            ),
        },
        summary="Invite someone (the token is in this response only)",
    )
    def post(self, request: Request) -> Response:
        data = s.InvitationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        identity = request_identity(request)
        invitation, token = services.invitation_create(
            tenant=identity.tenant,
            role=data.validated_data["role"],
            actor_roles=identity.roles,
            email=data.validated_data["email"],
            expires_at=data.validated_data.get("expires_at"),
            created_by=authenticated_user(request),
        )
        body = s.InvitationSerializer(invitation).data
        body["token"] = token
        return Response(body, status=status.HTTP_201_CREATED)


class InvitationDetailApi(APIView):
    permission_classes = [IsTenantAdmin]

    def _get(self, request: Request, invitation_id: uuid.UUID) -> Invitation:
        tenant = request_identity(request).tenant
        return get_or_404(
            lambda: selectors.invitation_get(tenant=tenant, invitation_id=invitation_id),
            "invitation in this tenant",
        )

    @extend_schema(responses=s.InvitationSerializer, summary="Get an invitation")
    def get(self, request: Request, invitation_id: uuid.UUID) -> Response:
        return Response(s.InvitationSerializer(self._get(request, invitation_id)).data)

    @extend_schema(
        responses={
            200: s.InvitationSerializer,
            **error_responses(
                409, _409="`invitation_used`: it was accepted; remove the member instead."
            ),
        },
        summary="Revoke an invitation",
        description="Its token stops working; the row stays readable (`revoked_at`) as the "
        "record, so a GET afterwards still finds it.",
    )
    def delete(self, request: Request, invitation_id: uuid.UUID) -> Response:
        invitation = services.invitation_revoke(invitation=self._get(request, invitation_id))
        return Response(s.InvitationSerializer(invitation).data)


class InvitationAcceptApi(APIView):
    """The signed-in caller joins the invitation's tenant. Works for someone who belongs
    to no tenant yet, so the session here needs no membership; an API key can't accept
    (it is the tenant's credential, not a person)."""

    authentication_classes = [
        ApiKeyAuthentication,
        OidcJwtAuthentication,
        UserSessionAuthentication,
    ]
    permission_classes = [IsSignedInUser]

    @extend_schema(
        request=s.InvitationAcceptSerializer,
        responses={
            201: s.MembershipJoinedSerializer,
            **error_responses(
                404,
                409,
                _404="`invitation_not_found`: no invitation has this token.",
                _409="`invitation_used`, `invitation_revoked`, `invitation_expired`, or "
                "`already_member`.",
            ),
        },
        summary="Accept an invitation as the signed-in user",
    )
    def post(self, request: Request) -> Response:
        data = s.InvitationAcceptSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticated_user(request)
        assert user is not None, "IsSignedInUser guards this view"
        membership = services.invitation_accept(token=data.validated_data["token"], user=user)
        return Response(
            s.MembershipJoinedSerializer(membership).data, status=status.HTTP_201_CREATED
        )
