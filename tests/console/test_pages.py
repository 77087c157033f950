"""The console's own pages: the dashboard counts the viewer's tenants only, the session
timeline draws a turn's spans with their trace ids and hides the private reasoning from a
role that may not read it, and another tenant's session is a 404."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.agents import orchestrator
from apps.agents.models import ActionNode
from apps.approvals import services as approval_services
from apps.approvals.models import ApprovalStatus
from tests.approvals.conftest import ParkTurn, SentTasks
from tests.conftest import World

pytestmark = pytest.mark.django_db(transaction=True)


def login(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def kpi(html: str, name: str) -> str:
    match = re.search(rf'data-kpi="{name}">([^<]*)<', html)
    assert match, f"no {name} figure on the dashboard"
    return match.group(1)


def test_dashboard_counts_only_the_viewers_tenants(world: World, park_turn: ParkTurn) -> None:
    park_turn()
    alice = login(world.alice).get(reverse("admin:index")).content.decode()
    assert kpi(alice, "turns") == "1"
    assert kpi(alice, "approvals-pending") == "1"
    assert 'data-chart="turns-by-status"' in alice and "<svg" in alice
    assert "waiting" in alice  # the parked turn's bar

    charlie = login(world.charlie).get(reverse("admin:index")).content.decode()
    assert kpi(charlie, "turns") == "0"
    assert kpi(charlie, "approvals-pending") == "0"
    assert "waiting" not in charlie.split('id="warden-dashboard"')[1].split("</section>")[0]


def test_sidebar_groups_by_domain_and_hides_what_the_viewer_cannot_open(world: World) -> None:
    html = login(world.charlie).get(reverse("admin:index")).content.decode()
    for group in ("Tenants and identity", "Agents and sessions", "Tools", "Policies", "Cost"):
        assert group in html, group
    # Django's user admin answers to Django permissions, which a tenant owner does not hold.
    assert reverse("admin:auth_user_changelist") not in html


def test_timeline_shows_spans_and_follows_the_viewers_role(
    world: World, park_turn: ParkTurn, sent: SentTasks, dave: Any
) -> None:
    parked = park_turn()
    # Decided in the console queue, through the approvals service, then the turn resumes.
    queue = login(dave)
    approve = reverse("admin:approvals_approvalrequest_approve", args=[parked.approval.id])
    assert queue.post(approve).status_code == 302
    parked.approval.refresh_from_db()
    assert parked.approval.status == ApprovalStatus.APPROVED
    sent.run(approval_services.APPROVAL_DECIDED_TASK)
    assert orchestrator.turn_execute(turn_id=parked.turn.id) == "completed"
    parked.turn.refresh_from_db()
    assert parked.turn.status == "completed", parked.turn.detail

    session = parked.turn.session
    url = reverse("console:session-timeline", args=[session.id])
    owner_page = login(world.alice).get(url)
    assert owner_page.status_code == 200
    html = owner_page.content.decode()
    kinds = set(re.findall(r'class="wf-span" role="listitem" data-kind="([a-z_]+)"', html))
    assert {"turn", "model_call", "tool_call", "policy"} <= kinds, kinds
    traced = ActionNode.objects.filter(turn=parked.turn).exclude(trace_id="")
    for node in traced:
        assert node.trace_id in html
    bars = re.findall(r'style="left: ([0-9.]+)%; width: ([0-9.]+)%"', html)
    assert bars and all(0 <= float(left) <= 100 and float(width) > 0 for left, width in bars)
    assert "shown (your role reads it)" in html

    # An approver decides but may not read the model's private reasoning.
    approver = login(dave).get(url).content.decode()
    assert "hidden (your role does not read it)" in approver
    assert "scratchpad (private)" not in approver
    private = [n.scratchpad for n in ActionNode.objects.filter(turn=parked.turn) if n.scratchpad]
    assert private, "the scripted model's thoughts are kept in the scratchpad"
    assert "scratchpad (private)" in html

    # Another tenant's session, by its id: 404, nothing shown.
    foreign = login(world.charlie).get(url)
    assert foreign.status_code == 404
    assert str(session.id) not in foreign.content.decode()


def test_timeline_of_no_session_is_404_and_login_is_required(world: World) -> None:
    url = reverse("console:session-timeline", args=["00000000-0000-0000-0000-000000000000"])
    assert login(world.alice).get(url).status_code == 404
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
