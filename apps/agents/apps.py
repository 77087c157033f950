from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "apps.agents"
    label = "agents"
    verbose_name = "Agents, sessions and turns"

    def ready(self) -> None:
        from apps.agents import metrics
        from apps.agents.admission import backpressure_detail
        from apps.core.health import readiness_detail_register

        metrics.register()
        readiness_detail_register("backpressure", backpressure_detail)
