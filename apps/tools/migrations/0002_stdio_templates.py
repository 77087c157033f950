"""stdio servers run operator-defined templates: `command` goes, `template` comes, and `args`
becomes the template's name → value map.

Existing stdio rows of the packaged servers become their templates (their parameters are checked
again when they start: a repository outside the tenant's workspace is refused then). Any other
stdio row is switched off: nothing of what a tenant chose to run survives. Tenant-chosen
environment variables are dropped.
"""

from typing import Any

from django.db import migrations, models

_PACKAGED = {
    "mcp_server_time": ("time", {"--local-timezone"}),
    "mcp_server_git": ("git", {"--repository"}),
}


def _to_templates(apps: Any, schema_editor: Any) -> None:
    McpServer = apps.get_model("tools", "McpServer")
    for server in McpServer.objects.all():
        old_args = server.args if isinstance(server.args, list) else []
        server.args, server.env = {}, {}
        if server.transport == "stdio":
            for module, (template, options) in _PACKAGED.items():
                if module in old_args:
                    server.template = template
                    pairs = zip(old_args, old_args[1:], strict=False)
                    server.args = {k: v for k, v in pairs if k in options}
                    break
            else:
                server.template = ""
                server.is_active = False
        server.save(update_fields=["template", "args", "env", "is_active"])


class Migration(migrations.Migration):
    dependencies = [
        ("tools", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="mcpserver",
            name="template",
            field=models.CharField(
                blank=True,
                help_text="stdio: the operator's server template (WARDEN_MCP_STDIO_TEMPLATES).",
                max_length=100,
            ),
        ),
        migrations.RunPython(_to_templates, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="mcpserver",
            name="command",
        ),
        migrations.AlterField(
            model_name="mcpserver",
            name="args",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="stdio: the template's arguments, name → value (only those it declares).",
            ),
        ),
        migrations.AlterField(
            model_name="mcpserver",
            name="env",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="stdio: the template's environment variables, name → value "
                "(not for secrets).",
            ),
        ),
    ]
