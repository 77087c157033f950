"""ToolJob comes from apps.tools, table and rows included.

State only: the model is declared here with `db_table = "tools_tooljob"`, the table it has
always had, so nothing is copied or renamed and a worker of the previous release keeps
working during a deploy. The content type (and so the console permissions granted on it)
moves with the model.
"""

import uuid
from typing import Any

import django.db.models.deletion
from django.db import migrations, models


def _move_content_type(app_from: str, app_to: str) -> Any:
    def move(apps: Any, schema_editor: Any) -> None:
        ContentType = apps.get_model("contenttypes", "ContentType")
        db = schema_editor.connection.alias
        if ContentType.objects.using(db).filter(app_label=app_to, model="tooljob").exists():
            return  # post_migrate made one already; the stale one is remove_stale_contenttypes'
        ContentType.objects.using(db).filter(app_label=app_from, model="tooljob").update(
            app_label=app_to
        )

    return move


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0002_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("tenants", "0001_initial"),
        ("tools", "0003_tooljob_to_agents"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ToolJob",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        ("node_id", models.CharField(max_length=200)),
                        ("tool_name", models.CharField(max_length=64)),
                        ("arguments", models.JSONField(default=dict)),
                        ("status", models.CharField(choices=[("queued", "Queued"), ("running", "Running"), ("completed", "Completed"), ("failed", "Failed")], default="queued", max_length=16)),
                        ("attempts", models.PositiveIntegerField(default=0)),
                        ("progress", models.FloatField(blank=True, null=True)),
                        ("progress_total", models.FloatField(blank=True, null=True)),
                        ("progress_message", models.CharField(blank=True, max_length=500)),
                        ("error", models.TextField(blank=True)),
                        ("started_at", models.DateTimeField(blank=True, null=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        ("tenant", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tenants.tenant")),
                        ("tool", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to="tools.tool")),
                        ("turn", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="agents.turn")),
                    ],
                    options={
                        "db_table": "tools_tooljob",
                        "ordering": ["-created_at"],
                        "constraints": [
                            models.UniqueConstraint(fields=("turn", "node_id"), name="uniq_tool_job_turn_node")
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(
            _move_content_type("tools", "agents"),
            _move_content_type("agents", "tools"),
            elidable=True,
        ),
    ]
