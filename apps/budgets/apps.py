from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    name = "apps.budgets"
    label = "budgets"
    verbose_name = "Budgets"

    def ready(self) -> None:
        from apps.budgets import metrics

        metrics.register()
