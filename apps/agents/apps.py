from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "apps.agents"
    label = "agents"
    verbose_name = "Agents, sessions and turns"

    def ready(self) -> None:
        from apps.agents import metrics
        from apps.agents.admission import backpressure_detail
        from apps.agents.selectors import (
            agent_choices_for,
            agent_slug_for,
            recorded_policy_decisions,
            session_ids_in_tenant,
        )
        from apps.budgets import targets
        from apps.core.health import readiness_detail_register
        from apps.policies import whatif

        metrics.register()
        readiness_detail_register("backpressure", backpressure_detail)
        # Budgets name agents by id and sit below this app: they learn agents from here.
        targets.agent_lookup_register(agent_slug_for)
        targets.agent_choices_register(agent_choices_for)
        # Policy what-ifs read the recorded decisions, which live here.
        whatif.recorded_decisions_register(recorded_policy_decisions, session_ids_in_tenant)
