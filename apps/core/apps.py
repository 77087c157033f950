from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Platform core"

    def ready(self) -> None:
        from apps.core.instrumentation import instrumentation_setup

        # Before any request is served or task run: the Django instrumentation adds its
        # middleware, which the handler reads when it is built (after django.setup()).
        instrumentation_setup()
