"""System checks (`manage.py check`, and `migrate` before `make run` starts anything): the
operator's stdio server templates must load, so a template that would let a tenant set an
interpreter, loader or shell variable stops the deployment instead of waiting for first use."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register

from apps.tools.exceptions import StdioTemplatesInvalid
from apps.tools.stdio import stdio_templates


@register()
def stdio_templates_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        stdio_templates()
    except StdioTemplatesInvalid as exc:
        return [
            Error(
                exc.message,
                hint="Fix WARDEN_MCP_STDIO_TEMPLATES; see apps/tools/stdio.py for the format.",
                id="tools.E001",
            )
        ]
    return []
