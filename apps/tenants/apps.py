from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "apps.tenants"
    label = "tenants"
    verbose_name = "Tenants and identity"

    def ready(self) -> None:
        from apps.core import redaction
        from apps.tenants import (
            schema,  # noqa: F401  (registers the OpenAPI auth schemes)
            selectors,
            signals,
        )

        signals.connect()
        # The redaction engine (pure, in core) reads a tenant's settings through this.
        redaction.set_config_loader(selectors.redaction_config_for)
