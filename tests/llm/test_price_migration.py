"""llm 0003: endpoints written when a zero price meant "free" (or "nobody set one") come out
priced, free, or refused; and back again.

The migrations run by hand on the suite's test database, as in
tests/agents/test_tool_job_migration.py; the `finally` puts the latest schema back.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.llm.models import ModelEndpoint
from apps.llm.services import endpoint_config

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("llm", "0002_endpoint_state")
AFTER = ("llm", "0003_endpoint_prices")

Node = tuple[str, str]


def migrate(targets: list[Node] | None = None) -> MigrationExecutor:
    executor = MigrationExecutor(connection)  # a fresh loader: it sees what is applied now
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return executor


def targets_at(node: Node) -> list[Node]:
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    return [node if app == node[0] else (app, name) for app, name in leaves]


@pytest.fixture
def before_prices() -> Iterator[Any]:
    targets = targets_at(BEFORE)
    try:
        yield migrate(targets).loader.project_state(targets).apps
    finally:
        migrate()  # the latest state again, for the rest of the suite


def test_zero_prices_become_free_or_missing_and_real_prices_stay(before_prices: Any) -> None:
    old = before_prices
    tenant = old.get_model("tenants", "Tenant").objects.create(name="Acme", slug="acme")
    Endpoint = old.get_model("llm", "ModelEndpoint")
    zero = {"price_input_per_mtok": Decimal(0), "price_output_per_mtok": Decimal(0)}
    rows = {
        "script": {"provider": "scripted", **zero},
        "local": {"provider": "local", **zero},
        "gpt": {"provider": "openai", **zero},
        "claude": {
            "provider": "anthropic",
            "price_input_per_mtok": Decimal("3"),
            "price_output_per_mtok": Decimal("15"),
        },
        "half": {
            "provider": "openai",
            "price_input_per_mtok": Decimal(0),
            "price_output_per_mtok": Decimal("0.6"),
        },
    }
    for name, fields in rows.items():
        Endpoint.objects.create(tenant=tenant, name=name, model=name, **fields)
    stamped = dict(Endpoint.objects.values_list("name", "updated_at"))

    migrate(targets_at(AFTER))

    now = {e.name: e for e in ModelEndpoint.objects.filter(tenant_id=tenant.id)}
    prices = {
        name: (e.is_free, e.price_input_per_mtok, e.price_output_per_mtok)
        for name, e in now.items()
    }
    assert prices == {
        "script": (True, None, None),
        "local": (True, None, None),
        "gpt": (False, None, None),
        "claude": (False, Decimal("3"), Decimal("15")),
        "half": (False, None, Decimal("0.6")),
    }
    refused = {name: endpoint_config(e).refused for name, e in now.items()}
    assert {name for name, why in refused.items() if why} == {"gpt", "half"}
    # Changed rows are newer, so every worker's cached router is rebuilt from them.
    assert all(now[name].updated_at > stamped[name] for name in rows if name != "claude")

    migrate(targets_at(BEFORE))
    back = {
        e.name: (e.price_input_per_mtok, e.price_output_per_mtok)
        for e in old.get_model("llm", "ModelEndpoint").objects.all()
    }
    assert back["gpt"] == back["script"] == (Decimal(0), Decimal(0))
    assert back["claude"] == (Decimal("3"), Decimal("15"))
    assert back["half"] == (Decimal(0), Decimal("0.6"))
