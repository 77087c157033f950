"""A session's events indexed with their tenant.

Every selector reads a session's events with the tenant as well (tenant isolation). With the
session's index on (session, id) alone, the planner took the two conditions as independent,
found the tenant's own index selective too, and ANDed both bitmaps: the backlog read of a new
event stream read every index entry of the tenant's events (0.4 ms against 0.04 ms on the
bench database, and growing with the tenant's history). On (session, tenant, id) one index
answers all of it, in order.

Built before the old index is dropped, both without locking out writes (a large event log
would otherwise stop every turn for as long as the build takes): PostgreSQL's CONCURRENTLY,
outside a transaction.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("agents", "0007_trace_ids"),
        ("tenants", "0003_redaction"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="sessionevent",
            index=models.Index(fields=["session", "tenant", "id"], name="event_session_tenant_id"),
        ),
        RemoveIndexConcurrently(
            model_name="sessionevent",
            name="agents_sess_session_c64484_idx",
        ),
    ]
