from django.urls import path

from apps.policies.api import views

urlpatterns = [
    path("policies", views.PolicyListApi.as_view(), name="policy-list"),
    path("policies/<uuid:policy_id>", views.PolicyDetailApi.as_view(), name="policy-detail"),
    path(
        "policies/<uuid:policy_id>/versions",
        views.PolicyVersionListApi.as_view(),
        name="policy-version-list",
    ),
    path(
        "policies/<uuid:policy_id>/evaluate",
        views.PolicyEvaluateApi.as_view(),
        name="policy-evaluate",
    ),
    path(
        "policies/<uuid:policy_id>/what-if",
        views.PolicyWhatIfApi.as_view(),
        name="policy-what-if",
    ),
]
