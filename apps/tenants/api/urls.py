from django.urls import path

from apps.tenants.api import views

urlpatterns = [
    path("me", views.MeApi.as_view(), name="me"),
    path("tenant", views.TenantApi.as_view(), name="tenant"),
    path("tenant/redaction", views.RedactionSettingsApi.as_view(), name="tenant-redaction"),
    path("members", views.MemberListApi.as_view(), name="member-list"),
    path("members/<uuid:membership_id>", views.MemberDetailApi.as_view(), name="member-detail"),
    path("invitations", views.InvitationListApi.as_view(), name="invitation-list"),
    path("invitations/accept", views.InvitationAcceptApi.as_view(), name="invitation-accept"),
    path(
        "invitations/<uuid:invitation_id>",
        views.InvitationDetailApi.as_view(),
        name="invitation-detail",
    ),
    path("api-keys", views.ApiKeyListApi.as_view(), name="api-key-list"),
    path("api-keys/<uuid:key_id>", views.ApiKeyDetailApi.as_view(), name="api-key-detail"),
    path("api-keys/<uuid:key_id>/revoke", views.ApiKeyRevokeApi.as_view(), name="api-key-revoke"),
]
