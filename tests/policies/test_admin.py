"""The console: a tenant admin edits a policy's source, mode and scope; every save is a new
version; a source that does not compile is refused with the compiler's line and column."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.policies.models import Policy
from tests.conftest import World

pytestmark = pytest.mark.django_db

GOOD = 'package warden\nimport rego.v1\n\ndecision := {"allow": true}\n'
BROKEN = "package warden\nimport rego.v1\n\ndecision if { input.a ==  }\n"


def form(world: World, **fields: Any) -> dict[str, Any]:
    return {
        "tenant": world.tenant_a.id,
        "name": "console-made",
        "description": "",
        "mode": "enforce",
        "entry_point": "data.warden.decision",
        "agent_slug": "",
        "tool_name": "",
        "source": GOOD,
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
        **fields,
    }


def test_a_tenant_admin_creates_and_edits_policies_as_versions(world: World) -> None:
    alice = Client()
    alice.force_login(world.alice)
    refused = alice.post("/admin/policies/policy/add/", form(world, source=BROKEN))
    assert refused.status_code == 200
    assert b"4:23" in refused.content and b"boolean operator" in refused.content
    assert not Policy.objects.filter(name="console-made").exists()

    created = alice.post("/admin/policies/policy/add/", form(world))
    assert created.status_code == 302, created.content[:2000]
    policy = Policy.objects.get(tenant=world.tenant_a, name="console-made")
    assert policy.current_version is not None and policy.current_version.number == 1
    assert policy.current_version.author == world.alice

    page = alice.get(f"/admin/policies/policy/{policy.id}/change/")
    assert page.status_code == 200 and b"decision :=" in page.content

    changed = alice.post(
        f"/admin/policies/policy/{policy.id}/change/",
        form(world, mode="report_only", source=GOOD.replace("true", "false")),
    )
    assert changed.status_code == 302
    policy.refresh_from_db()
    assert policy.mode == "report_only"
    assert policy.current_version is not None and policy.current_version.number == 2
    assert policy.versions.count() == 2
    assert '"allow": false' in policy.source


def test_a_tenant_admin_never_sees_another_tenants_policies(world: World) -> None:
    foreign = Policy.objects.get(tenant=world.tenant_b, name="default")
    alice = Client()
    alice.force_login(world.alice)
    listed = alice.get("/admin/policies/policy/")
    assert listed.status_code == 200
    assert str(foreign.id).encode() not in listed.content
    response = alice.get(f"/admin/policies/policy/{foreign.id}/change/")
    assert response.status_code == 404
