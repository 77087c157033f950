"""ToolJob moves to apps.agents (a job points at a turn: the agents' business, and apps.tools
may not know about turns). State only: the table `tools_tooljob` and its rows stay where they
are; agents 0003 adopts them."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("tools", "0002_stdio_templates"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="ToolJob")],
            database_operations=[],
        ),
    ]
