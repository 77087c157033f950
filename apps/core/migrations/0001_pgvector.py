from django.db import migrations
from pgvector.django import VectorExtension


class Migration(migrations.Migration):
    """pgvector is needed by the memory store; enable it once per database."""

    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [VectorExtension()]
