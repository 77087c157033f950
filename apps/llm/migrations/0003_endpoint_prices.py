"""Endpoints are priced or marked free: a zero price no longer means "free".

Before, both prices defaulted to 0, so "free" and "nobody set a price" looked alike, and a
remote endpoint nobody priced cost nothing against a money budget. Now:
- scripted and local endpoints are marked `is_free` and lose their (zero) prices: they cost
  no provider anything;
- every other zero price becomes NULL: the endpoint is kept, but refused for calls until an
  operator sets both prices or marks it free (README: upgrading);
- non-zero prices stay.
Backwards, NULL prices become 0 again and `is_free` goes.
"""

import django.core.validators
from decimal import Decimal
from django.db import migrations, models
from django.db.models.functions import Now

FREE_PROVIDERS = ("scripted", "local")
PRICES = ("price_input_per_mtok", "price_output_per_mtok")


def price_or_mark_free(apps, schema_editor):
    ModelEndpoint = apps.get_model("llm", "ModelEndpoint")
    # updated_at moves with every change, so a router cached on an endpoint's
    # (id, updated_at) is rebuilt from the new rows.
    ModelEndpoint.objects.filter(provider__in=FREE_PROVIDERS).update(
        is_free=True, price_input_per_mtok=None, price_output_per_mtok=None, updated_at=Now()
    )
    for price in PRICES:
        ModelEndpoint.objects.filter(**{price: 0}).update(**{price: None, "updated_at": Now()})


def zero_prices_again(apps, schema_editor):
    ModelEndpoint = apps.get_model("llm", "ModelEndpoint")
    for price in PRICES:
        ModelEndpoint.objects.filter(**{f"{price}__isnull": True}).update(
            **{price: Decimal(0), "updated_at": Now()}
        )
    # The columns' ALTER (NOT NULL again) comes next in this transaction, and PostgreSQL
    # refuses to alter a table with deferred foreign-key checks still queued by the UPDATE.
    schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):

    dependencies = [
        ('llm', '0002_endpoint_state'),
    ]

    operations = [
        migrations.AddField(
            model_name='modelendpoint',
            name='is_free',
            field=models.BooleanField(default=False, help_text='Calls cost nothing (a scripted or local model): no price is set. An endpoint with neither both prices nor this mark is never called.'),
        ),
        migrations.AlterField(
            model_name='modelendpoint',
            name='price_input_per_mtok',
            field=models.DecimalField(blank=True, decimal_places=4, help_text="Per million input tokens, in the tenant's currency.", max_digits=12, null=True, validators=[django.core.validators.MinValueValidator(Decimal('0.0001')), django.core.validators.MaxValueValidator(Decimal('99999.9999'))]),
        ),
        migrations.AlterField(
            model_name='modelendpoint',
            name='price_output_per_mtok',
            field=models.DecimalField(blank=True, decimal_places=4, help_text="Per million output tokens, in the tenant's currency.", max_digits=12, null=True, validators=[django.core.validators.MinValueValidator(Decimal('0.0001')), django.core.validators.MaxValueValidator(Decimal('99999.9999'))]),
        ),
        migrations.RunPython(price_or_mark_free, zero_prices_again),
    ]
