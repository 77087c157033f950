from django.urls import path

from apps.budgets.api import views

urlpatterns = [
    path("budgets", views.BudgetListApi.as_view(), name="budget-list"),
    path("budgets/<uuid:budget_id>", views.BudgetDetailApi.as_view(), name="budget-detail"),
    path("usage", views.UsageApi.as_view(), name="usage"),
]
