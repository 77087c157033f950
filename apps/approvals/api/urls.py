from django.urls import path

from apps.approvals.api import views

urlpatterns = [
    path("approvals", views.ApprovalListApi.as_view(), name="approval-list"),
    path("approvals/<uuid:approval_id>", views.ApprovalDetailApi.as_view(), name="approval-detail"),
    path(
        "approvals/<uuid:approval_id>/approve",
        views.ApprovalApproveApi.as_view(),
        name="approval-approve",
    ),
    path(
        "approvals/<uuid:approval_id>/reject",
        views.ApprovalRejectApi.as_view(),
        name="approval-reject",
    ),
]
