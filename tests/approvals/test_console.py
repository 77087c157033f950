"""The console's approval queue: approvers of a tenant see its pending requests, approve
with one click (a CSRF-protected POST from the list), reject through a page that asks why.
Nobody else sees or decides them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from apps.approvals.models import ApprovalRequest, ApprovalStatus, SlackIdentity
from apps.tenants.models import Membership, Role
from tests.approvals.conftest import ParkTurn, SentTasks
from tests.conftest import World
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = "/admin/approvals/approvalrequest/"


def login(user: Any, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def csrf_token(html: bytes) -> str:
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1).decode()


def test_one_click_approve_from_the_queue(
    world: World, park_turn: ParkTurn, sent: SentTasks, dave: Any
) -> None:
    approval = park_turn().approval
    client = login(dave, csrf=True)
    opened = client.get(QUEUE)
    assert opened.status_code == 302 and opened["Location"].endswith("?status__exact=pending")
    page = client.get(opened["Location"])
    assert page.status_code == 200
    approve_url = f"{QUEUE}{approval.id}/approve/"
    assert approve_url.encode() in page.content and b"guarded_append" in page.content

    # The detail page shows what is asked, with the same one-click button.
    detail = client.get(f"{QUEUE}{approval.id}/change/")
    assert detail.status_code == 200
    assert (
        approve_url.encode() in detail.content and str(approval.turn_id).encode() in detail.content
    )
    # Without the page's CSRF token, the click is refused and changes nothing.
    assert client.post(approve_url).status_code == 403
    assert ApprovalRequest.objects.get(id=approval.id).status == ApprovalStatus.PENDING

    # The button posts the list's form, CSRF token included.
    done = client.post(approve_url, {"csrfmiddlewaretoken": csrf_token(page.content)})
    assert done.status_code == 302
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED
    assert (approval.approver, approval.decided_by, approval.decided_via) == (
        "dave",
        dave,
        "console",
    )
    assert sent.names() == ["agents.approval_decided"]
    # The queue no longer lists it; a second click says it was decided already.
    assert approve_url.encode() not in client.get(done["Location"]).content
    token = csrf_token(client.get(f"{QUEUE}?status__exact=approved").content)
    client.post(approve_url, {"csrfmiddlewaretoken": token})
    messages = [str(m) for m in client.get(QUEUE + "?status__exact=pending").context["messages"]]
    assert any("already approved" in m for m in messages)
    assert sent.names() == ["agents.approval_decided"]


def test_reject_asks_for_a_rationale(
    world: World, park_turn: ParkTurn, sent: SentTasks, dave: Any
) -> None:
    parked = park_turn(arguments={"password": "hunter2-secret"})
    approval = parked.approval
    client = login(dave)
    url = f"{QUEUE}{approval.id}/reject/"
    form = client.get(url)
    assert form.status_code == 200
    assert b"guarded_append" in form.content and b"hunter2-secret" not in form.content

    empty = client.post(url, {"rationale": ""})
    assert empty.status_code == 200 and empty.context["form"].errors
    assert ApprovalRequest.objects.get(id=approval.id).status == ApprovalStatus.PENDING

    done = client.post(url, {"rationale": "writes to the wrong place"})
    assert done.status_code == 302
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.REJECTED
    assert approval.rationale == "writes to the wrong place" and approval.approver == "dave"


def test_only_the_tenants_approvers_see_and_decide(
    world: World, park_turn: ParkTurn, sent: SentTasks, dave: Any
) -> None:
    approval = park_turn().approval
    operator = UserFactory(username="olga", is_staff=True)
    MembershipFactory(tenant=world.tenant_a, user=operator, role=Role.OPERATOR)
    approve_url = f"{QUEUE}{approval.id}/approve/"
    reject_url = f"{QUEUE}{approval.id}/reject/"

    # Charlie owns tenant B: the queue is empty for him, and A's request does not exist.
    charlie = login(world.charlie)
    assert b"guarded_append" not in charlie.get(f"{QUEUE}?status__exact=pending").content
    assert charlie.post(approve_url).status_code == 404
    assert charlie.post(reject_url, {"rationale": "mine now"}).status_code == 404
    # An operator of tenant A configures, but does not decide: no queue at all.
    olga = login(operator)
    assert olga.get(f"{QUEUE}?status__exact=pending").status_code == 403
    assert olga.post(approve_url).status_code in (403, 404)
    assert ApprovalRequest.objects.get(id=approval.id).status == ApprovalStatus.PENDING
    assert sent.names() == []
    # The owner of tenant A may (alice), as may the approver (dave).
    alice_page = login(world.alice).get(f"{QUEUE}?status__exact=pending")
    assert approve_url.encode() in alice_page.content
    assert approve_url.encode() in login(dave).get(f"{QUEUE}?status__exact=pending").content


def test_a_demoted_approver_is_refused(
    world: World, park_turn: ParkTurn, sent: SentTasks, dave: Any
) -> None:
    approval = park_turn().approval
    client = login(dave)
    Membership.objects.filter(user=dave).update(role=Role.MEMBER)
    response = client.post(f"{QUEUE}{approval.id}/approve/")
    assert response.status_code in (403, 404)
    assert ApprovalRequest.objects.get(id=approval.id).status == ApprovalStatus.PENDING


def test_admins_link_slack_users_only_to_their_members(world: World, dave: Any) -> None:
    alice = login(world.alice)
    page = alice.get("/admin/approvals/slackidentity/add/")
    assert page.status_code == 200
    assert b"dave" in page.content and b"charlie" not in page.content  # charlie is B's
    stranger = UserFactory(username="stranger")
    refused = alice.post(
        "/admin/approvals/slackidentity/add/",
        {"tenant": world.tenant_a.id, "user": stranger.id, "slack_user_id": "U999"},
    )
    assert refused.status_code == 200 and not SlackIdentity.objects.exists()
    linked = alice.post(
        "/admin/approvals/slackidentity/add/",
        {"tenant": world.tenant_a.id, "user": dave.id, "slack_user_id": "U_DAVE"},
    )
    assert linked.status_code == 302
    assert SlackIdentity.objects.get().user == dave
    # An approver is no admin: Slack links and settings are not theirs to change.
    assert login(dave).get("/admin/approvals/slackidentity/add/").status_code == 403
    assert login(dave).get("/admin/approvals/slacksettings/add/").status_code == 403
