"""One rule in every console page: a tenant admin who is not a superuser sees and edits only
their own tenant. The test walks every registered ModelAdmin — today's and any added later —
as charlie (owner of Globex only) with a row of each model in both tenants, and tries what an
attacker would: open Acme's row by id, filter the list for Acme, search an autocomplete for
Acme's row, run an action on Acme's row."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.db import IntegrityError, models, transaction
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from apps.tenants.admin_scoping import TenantScopedAdmin
from apps.tenants.models import Tenant
from tests.conftest import World

pytestmark = pytest.mark.django_db

MARK = "zq"  # every generated string starts with it, so a leak is easy to spot in HTML


def _value(field: models.Field[Any, Any], tenant: Tenant, made: dict[Any, Any]) -> Any:
    if isinstance(field, models.ForeignKey):
        if field.remote_field.model is Tenant:
            return tenant
        return _make(field.remote_field.model, tenant, made)
    if field.choices:
        return field.choices[0][0]
    if isinstance(field, models.UUIDField):
        return uuid.uuid4()
    if isinstance(field, models.BooleanField):
        return False
    if isinstance(field, models.DecimalField):
        return Decimal(1)
    if isinstance(field, models.IntegerField | models.FloatField):
        return 1
    if isinstance(field, models.DateTimeField):
        return timezone.now() + timedelta(days=1)
    if isinstance(field, models.JSONField):
        return {}
    if isinstance(field, models.CharField | models.TextField):
        text = f"{MARK}{uuid.uuid4().hex[:10]}"
        return text[: field.max_length] if field.max_length else text
    raise TypeError(field)


def _make(model: Any, tenant: Tenant, made: dict[Any, Any]) -> Any:
    """A row of `model` in `tenant`, every required field filled with a plain value."""
    key = (model, tenant.id)
    if key in made:
        return made[key]
    if model is Tenant:
        return tenant
    values: dict[str, Any] = {}
    for field in model._meta.concrete_fields:
        if field.primary_key or field.has_default() or field.null or field.blank:
            if not isinstance(field, models.ForeignKey) or field.null:
                if field.name != "tenant":
                    continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            continue
        values[field.name] = _value(field, tenant, made)
    if "max_tokens" in {f.name for f in model._meta.concrete_fields}:
        values["max_tokens"] = 1000  # budgets: a cap of some kind is required
    with transaction.atomic():
        row = model.objects.create(**values)
    made[key] = row
    return row


def _scoped_admins() -> list[tuple[Any, TenantScopedAdmin]]:
    return [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if isinstance(model_admin, TenantScopedAdmin)
    ]


@pytest.fixture
def rows(world: World) -> dict[Any, tuple[Any, Any]]:
    """model → (Acme's row, Globex's row) for every scoped model a plain row can be made of."""
    made: dict[Any, Any] = {}
    out = {}
    for model, _ in _scoped_admins():
        try:
            out[model] = (_make(model, world.tenant_a, made), _make(model, world.tenant_b, made))
        except (IntegrityError, TypeError, ValueError):
            continue  # a model whose constraints a plain row cannot meet: walked without rows
    return out


def _url(model: Any, view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_every_console_admin_is_tenant_scoped() -> None:
    """No ModelAdmin of the platform's apps escapes the one mixin (Django's own user and
    group admins answer to Django permissions, which tenant admins do not get)."""
    unscoped = [
        model._meta.label
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label.startswith(("tenants", "agents", "llm", "tools", "policies"))
        or model._meta.app_label in {"approvals", "budgets", "memory", "console"}
        if not isinstance(model_admin, TenantScopedAdmin)
    ]
    assert unscoped == []


def test_most_models_got_rows_of_both_tenants(rows: dict[Any, Any]) -> None:
    # Keeps the walk honest: if row-making broke, the walk below would prove nothing.
    assert len(rows) >= len(_scoped_admins()) * 2 // 3, sorted(m._meta.label for m in rows)


def test_a_tenant_admin_sees_only_their_tenant_everywhere(
    world: World, rows: dict[Any, tuple[Any, Any]]
) -> None:
    client = Client()
    client.force_login(world.charlie)
    for model, model_admin in _scoped_admins():
        label = model._meta.label
        changelist = client.get(_url(model, "changelist"), follow=True)
        assert changelist.status_code == 200, label
        html = changelist.content.decode()
        assert "Acme" not in html, f"{label}: another tenant's name in the list"
        if model not in rows:
            continue
        theirs, mine = rows[model]
        their_link = _url(model, "change", theirs.pk)
        assert their_link not in html, f"{label}: another tenant's row in the list"
        assert _url(model, "change", mine.pk) in html, f"{label}: own row missing"

        # A crafted id: the change page of Acme's row does not open.
        page = client.get(_url(model, "change", theirs.pk))
        assert page.status_code == 404, label
        assert their_link not in page.content.decode(), label
        # ... nor the delete page or the history.
        for view in ("delete", "history"):
            resp = client.get(_url(model, view, theirs.pk))
            assert resp.status_code in (403, 404), (label, view)

        # A crafted filter: the list filtered for Acme is empty, never Acme's rows.
        field = model_admin.tenant_field
        crafted = client.get(
            _url(model, "changelist"), {f"{field}__id__exact": str(world.tenant_a.id)}
        )
        assert their_link not in crafted.content.decode(), label

        # A crafted action: Acme's row selected by id is not touched.
        actions = model_admin.get_actions(_request_for(client, world.charlie))
        for name in actions:
            if name == "delete_selected":
                continue
            client.post(
                _url(model, "changelist"),
                {"action": name, "_selected_action": [str(theirs.pk)], "index": 0},
            )
        theirs.refresh_from_db()  # still there, and the test below shows still untouched


def test_a_tenant_admin_cannot_delete_another_tenants_row_by_action(
    world: World, rows: dict[Any, tuple[Any, Any]]
) -> None:
    client = Client()
    client.force_login(world.charlie)
    for model, model_admin in _scoped_admins():
        if model not in rows or not model_admin.has_delete_permission(
            _request_for(client, world.charlie)
        ):
            continue
        theirs, _ = rows[model]
        client.post(
            _url(model, "changelist"),
            {"action": "delete_selected", "_selected_action": [str(theirs.pk)], "post": "yes"},
        )
        assert model.objects.filter(pk=theirs.pk).exists(), model._meta.label


def test_autocomplete_and_select_boxes_offer_only_their_tenant(
    world: World, rows: dict[Any, tuple[Any, Any]]
) -> None:
    client = Client()
    client.force_login(world.charlie)
    for model, _ in _scoped_admins():
        label = model._meta.label
        # Every foreign key of the add form: its choices hold none of Acme's rows.
        add = client.get(_url(model, "add"))
        if add.status_code == 200:
            html = add.content.decode()
            for other, (theirs, _) in rows.items():
                assert f'value="{theirs.pk}"' not in html, (label, other._meta.label)
            assert f'value="{world.tenant_a.id}"' not in html, label
    # Django's autocomplete endpoint answers for any foreign key of a registered model whose
    # target's admin has search fields, listed in autocomplete_fields or not: an attacker
    # can ask it directly. Searching every such field finds charlie's rows, never Acme's.
    searched = 0
    for source in admin.site._registry:
        for f in source._meta.concrete_fields:
            target = f.remote_field.model if f.remote_field else None
            target_admin = admin.site._registry.get(target)
            if target_admin is None or not target_admin.search_fields or target not in rows:
                continue
            resp = client.get(
                reverse("admin:autocomplete"),
                {
                    "term": "",
                    "app_label": source._meta.app_label,
                    "model_name": source._meta.model_name,
                    "field_name": f.name,
                },
            )
            assert resp.status_code in (200, 403), (source._meta.label, f.name)
            ids = {r["id"] for r in resp.json()["results"]} if resp.status_code == 200 else set()
            assert str(rows[target][0].pk) not in ids, (source._meta.label, f.name)
            assert str(world.tenant_a.id) not in ids, (source._meta.label, f.name)
            searched += resp.status_code == 200
    assert searched, "no autocomplete answered: the walk proved nothing"


def _request_for(client: Client, user: Any) -> Any:
    request = RequestFactory().get("/admin/")
    request.user = user
    return request
