"""Slack: the card goes out through slack-sdk (against a loopback Slack that speaks the Web
API methods used), clicks come back signed to /integrations/slack/interactions/, and only
linked approvers of the request's tenant decide — once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.cache import cache
from django.test import Client, override_settings
from slack_sdk.signature import Clock, SignatureVerifier

import apps.approvals.tasks  # registers the approvals' tasks in this process
from apps.approvals import services as approval_services
from apps.approvals import slack
from apps.approvals.interactions import replay_key
from apps.approvals.models import ApprovalRequest, ApprovalStatus, SlackIdentity, SlackSettings
from tests.approvals.conftest import ParkTurn, SentTasks
from tests.approvals.slack_server import CHANNEL, SlackServer
from tests.conftest import World

URL = "/integrations/slack/interactions/"
SECRET = "test-signing-secret-0123456789abcdef"
TOKEN = "xoxb-test-token"
TEAM = "T0ACME"
POST = approval_services.SLACK_POST_TASK
UPDATE = approval_services.SLACK_UPDATE_TASK
TELL = approval_services.SLACK_TELL_TASK
DECIDED = approval_services.APPROVAL_DECIDED_TASK

# Slack's published example (docs: "Verifying requests from Slack").
VECTOR_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
VECTOR_TIMESTAMP = "1531420618"
VECTOR_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
    "G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-"
    "collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F3977008"
    "85554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c"
    "447fce8b6703c"
)
VECTOR_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


# --------------------------------------------------------------------------- signatures


@override_settings(SLACK_SIGNING_SECRET=VECTOR_SECRET, SLACK_BOT_TOKEN=TOKEN)
def test_slacks_published_signature_vector_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slack, "clock", FixedClock(int(VECTOR_TIMESTAMP)))
    assert slack.signature_valid(
        body=VECTOR_BODY.encode(), timestamp=VECTOR_TIMESTAMP, signature=VECTOR_SIGNATURE
    )
    tampered = VECTOR_BODY.replace("roadrunner", "coyote").encode()
    assert not slack.signature_valid(
        body=tampered, timestamp=VECTOR_TIMESTAMP, signature=VECTOR_SIGNATURE
    )
    # The same request, 5 minutes and a second later: stale.
    monkeypatch.setattr(slack, "clock", FixedClock(int(VECTOR_TIMESTAMP) + 301))
    assert not slack.signature_valid(
        body=VECTOR_BODY.encode(), timestamp=VECTOR_TIMESTAMP, signature=VECTOR_SIGNATURE
    )
    assert not slack.signature_valid(body=b"x", timestamp="not-a-number", signature="v0=00")


@override_settings(SLACK_SIGNING_SECRET=VECTOR_SECRET, SLACK_BOT_TOKEN=TOKEN)
def test_the_endpoint_checks_the_vector_before_reading_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = Client()
    # The vector's signature never changes: forget that an earlier run of this test sent it.
    cache.delete(replay_key(VECTOR_SIGNATURE))

    def post(body: str, timestamp: str = VECTOR_TIMESTAMP) -> Any:
        return client.post(
            URL,
            body,
            content_type="application/x-www-form-urlencoded",
            HTTP_X_SLACK_REQUEST_TIMESTAMP=timestamp,
            HTTP_X_SLACK_SIGNATURE=VECTOR_SIGNATURE,
        )

    monkeypatch.setattr(slack, "clock", FixedClock(int(VECTOR_TIMESTAMP) + 301))
    stale = post(VECTOR_BODY)
    assert stale.status_code == 401 and stale.json()["code"] == "invalid_signature"
    monkeypatch.setattr(slack, "clock", FixedClock(int(VECTOR_TIMESTAMP)))
    tampered = post(VECTOR_BODY.replace("roadrunner", "coyote"))
    assert tampered.status_code == 401 and tampered.json()["code"] == "invalid_signature"
    # Signed right: accepted, and then found to be no interaction (a slash command).
    accepted = post(VECTOR_BODY)
    assert accepted.status_code == 400 and accepted.json()["code"] == "invalid_payload"
    # Captured and sent again inside the window: refused.
    replayed = post(VECTOR_BODY)
    assert replayed.status_code == 401 and replayed.json()["code"] == "replayed_request"


def test_without_slack_configured_the_endpoint_is_off() -> None:
    response = Client().post(
        URL, "payload=%7B%7D", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 404 and response.json()["code"] == "slack_disabled"


# --------------------------------------------------------------------------- the flow


@pytest.fixture
def slack_api() -> Iterator[SlackServer]:
    server = SlackServer()
    yield server
    server.stop()


@pytest.fixture
def slack_on(world: World, dave: Any, slack_api: SlackServer) -> Iterator[SlackServer]:
    with override_settings(
        SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SECRET, SLACK_API_BASE_URL=slack_api.base_url
    ):
        SlackSettings.objects.create(tenant=world.tenant_a, channel_id=CHANNEL, team_id=TEAM)
        SlackIdentity.objects.create(tenant=world.tenant_a, user=dave, slack_user_id="U0DAVE")
        yield slack_api


def signed(payload: dict[str, Any], *, secret: str = SECRET, age: int = 0) -> dict[str, Any]:
    """What Slack would send: the form body and its signature headers."""
    body = urlencode({"payload": json.dumps(payload)})
    timestamp = str(int(time.time()) - age)
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {
        "data": body,
        "content_type": "application/x-www-form-urlencoded",
        "HTTP_X_SLACK_REQUEST_TIMESTAMP": timestamp,
        "HTTP_X_SLACK_SIGNATURE": signature,
    }


def click(approval: ApprovalRequest, action: str, user: str = "U0DAVE", team: str = TEAM) -> Any:
    return {
        "type": "block_actions",
        "user": {"id": user, "team_id": team},
        "team": {"id": team},
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "channel_id": CHANNEL, "message_ts": approval.slack_ts},
        "trigger_id": "1337.42.abcdef",
        "actions": [
            {
                "type": "button",
                "action_id": action,
                "block_id": "approval_actions",
                "value": str(approval.id),
                "action_ts": f"{time.time():.6f}",  # every click is a new request
            }
        ],
    }


def submission(
    approval: ApprovalRequest, rationale: str | None, user: str = "U0DAVE", team: str = TEAM
) -> Any:
    return {
        "type": "view_submission",
        "user": {"id": user, "team_id": team},
        "team": {"id": team},
        "view": {
            "id": "V0MODAL",
            "callback_id": slack.REJECT_CALLBACK,
            "private_metadata": json.dumps({"approval_id": str(approval.id)}),
            "state": {
                "values": {
                    slack.RATIONALE_BLOCK: {
                        slack.RATIONALE_INPUT: {"type": "plain_text_input", "value": rationale}
                    }
                }
            },
        },
    }


def card_text(call_body: dict[str, Any]) -> str:
    return json.dumps(call_body["blocks"])


@pytest.mark.django_db(transaction=True)
def test_card_is_posted_and_an_approvers_click_decides_once(
    world: World, park_turn: ParkTurn, sent: SentTasks, slack_on: SlackServer
) -> None:
    parked = park_turn(arguments={"api_key": "sk-live-123456789"})
    approval = parked.approval
    assert sent.names() == [POST]
    assert sent.run(POST) == ["posted"]
    (post,) = slack_on.of("chat.postMessage")
    assert post.token == TOKEN and post.body["channel"] == CHANNEL
    card = card_text(post.body)
    for shown in ("guarded_append", "Agent guarded", "alice", "dev", "Tokens so far", "[redacted]"):
        assert shown in card, shown
    assert "sk-live-123456789" not in json.dumps(post.body)
    buttons = post.body["blocks"][-2]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (slack.APPROVE_ACTION, str(approval.id)),
        (slack.REJECT_ACTION, str(approval.id)),
    ]
    approval.refresh_from_db()
    assert (approval.slack_channel, approval.slack_ts) == (CHANNEL, "1700000000.000001")

    client = Client()
    request = signed(click(approval, slack.APPROVE_ACTION))
    assert client.post(URL, **request).status_code == 200
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED
    assert (approval.approver, approval.decided_by, approval.decided_via) == (
        "dave",
        approval.decided_by,
        "slack",
    )
    assert approval.decided_by is not None and approval.decided_by.username == "dave"
    assert sorted(sent.names()) == sorted([DECIDED, UPDATE])
    assert sent.run(UPDATE) == ["updated"]
    (update,) = slack_on.of("chat.update")
    assert (update.body["channel"], update.body["ts"]) == (CHANNEL, approval.slack_ts)
    assert "Approved* by dave" in card_text(update.body)
    assert "approval_approve" not in card_text(update.body)  # no buttons on a decided card

    # The captured request, replayed: refused before anything is read.
    replayed = client.post(URL, **request)
    assert replayed.status_code == 401 and replayed.json()["code"] == "replayed_request"
    # A fresh second click: nothing changes; the clicker is told.
    sent.sent.clear()
    assert client.post(URL, **signed(click(approval, slack.APPROVE_ACTION))).status_code == 200
    assert sent.names() == [TELL]
    sent.run(TELL)
    (note,) = slack_on.of("chat.postEphemeral")
    assert note.body["user"] == "U0DAVE" and "already approved" in note.body["text"]
    assert ApprovalRequest.objects.get(id=approval.id).approver == "dave"


@pytest.mark.django_db(transaction=True)
def test_reject_opens_a_modal_whose_submission_decides(
    world: World, park_turn: ParkTurn, sent: SentTasks, slack_on: SlackServer
) -> None:
    approval = park_turn().approval
    sent.run(POST)
    approval.refresh_from_db()
    client = Client()

    assert client.post(URL, **signed(click(approval, slack.REJECT_ACTION))).status_code == 200
    (opened,) = slack_on.of("views.open")
    assert opened.body["trigger_id"] == "1337.42.abcdef"
    assert json.loads(opened.body["view"]["private_metadata"]) == {"approval_id": str(approval.id)}
    assert ApprovalRequest.objects.get(id=approval.id).status == ApprovalStatus.PENDING

    empty = client.post(URL, **signed(submission(approval, "  ")))
    assert empty.status_code == 200
    assert empty.json()["response_action"] == "errors"
    assert "rationale" in empty.json()["errors"][slack.RATIONALE_BLOCK]
    assert ApprovalRequest.objects.get(id=approval.id).status == ApprovalStatus.PENDING

    done = client.post(URL, **signed(submission(approval, "not <!channel> today")))
    assert done.status_code == 200 and done.content == b""  # closes the modal
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.REJECTED
    assert approval.rationale == "not <!channel> today" and approval.approver == "dave"
    sent.run(UPDATE)
    (update,) = slack_on.of("chat.update")
    text = card_text(update.body)
    assert "Rejected* by dave: not &lt;!channel&gt; today" in text  # escaped: no @channel

    again = client.post(URL, **signed(submission(approval, "twice")))
    assert "already rejected" in again.json()["errors"][slack.RATIONALE_BLOCK]


@pytest.mark.django_db(transaction=True)
def test_clicks_from_anyone_but_a_linked_approver_are_refused_and_told(
    world: World, park_turn: ParkTurn, sent: SentTasks, slack_on: SlackServer
) -> None:
    approval = park_turn().approval
    sent.run(POST)
    approval.refresh_from_db()
    SlackIdentity.objects.create(tenant=world.tenant_a, user=world.bob, slack_user_id="U0BOB")
    SlackSettings.objects.create(tenant=world.tenant_b, channel_id="C0B")
    SlackIdentity.objects.create(
        tenant=world.tenant_b, user=world.charlie, slack_user_id="U0CHARLIE"
    )
    client = Client()
    refusals = {
        ("U0EVE", TEAM): "not linked",  # nobody we know
        ("U0BOB", TEAM): "approvers",  # a member, not an approver
        ("U0CHARLIE", TEAM): "not linked",  # an owner, of another tenant
        ("U0DAVE", "T0EVIL"): "workspace",  # the right user id from another workspace
    }
    for user, team in refusals:
        for action in (slack.APPROVE_ACTION, slack.REJECT_ACTION):
            response = client.post(URL, **signed(click(approval, action, user=user, team=team)))
            assert response.status_code == 200
        view = client.post(URL, **signed(submission(approval, "no", user=user, team=team)))
        assert view.json()["response_action"] == "errors"
    assert ApprovalRequest.objects.get(id=approval.id).status == ApprovalStatus.PENDING
    assert DECIDED not in sent.names() and slack_on.of("views.open") == []
    sent.run(TELL)
    notes = {(c.body["user"], c.body["text"]) for c in slack_on.of("chat.postEphemeral")}
    for (user, _), why in refusals.items():
        assert any(u == user and why in text for u, text in notes), (user, why, notes)


@pytest.mark.django_db(transaction=True)
def test_forged_stale_and_tampered_requests_get_401_and_change_nothing(
    world: World, park_turn: ParkTurn, sent: SentTasks, slack_on: SlackServer
) -> None:
    approval = park_turn().approval
    sent.sent.clear()
    client = Client()
    approve = click(approval, slack.APPROVE_ACTION)
    forged = signed(approve, secret="not-the-signing-secret")
    stale = signed(approve, age=6 * 60)
    tampered = signed(click(approval, slack.APPROVE_ACTION, user="U0EVE"))
    tampered["data"] = urlencode({"payload": json.dumps(approve)})  # dave's click, eve's MAC
    unsigned = {k: v for k, v in signed(approve).items() if k != "HTTP_X_SLACK_SIGNATURE"}
    for request in (forged, stale, tampered, unsigned):
        response = client.post(URL, **request)
        assert response.status_code == 401 and response.json()["code"] == "invalid_signature"
    assert ApprovalRequest.objects.get(id=approval.id).status == ApprovalStatus.PENDING
    assert sent.names() == [] and slack_on.calls == []


@pytest.mark.django_db(transaction=True)
def test_a_slack_outage_never_blocks_a_decision(
    world: World, park_turn: ParkTurn, sent: SentTasks, slack_on: SlackServer, dave_client: Any
) -> None:
    slack_on.fail_with = 503
    approval = park_turn().approval
    (result,) = [
        apps.approvals.tasks.slack_post.apply(args=[str(approval.id)])
        for name, _ in sent.sent
        if name == POST
    ]
    assert result.failed()  # retried with backoff, then given up
    assert len(slack_on.of("chat.postMessage")) == 1 + apps.approvals.tasks.MAX_RETRIES
    response = dave_client.post(f"/api/v1/approvals/{approval.id}/approve", {}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "approved"
    # No card was posted, so there is none to update: the turn is told all the same.
    assert DECIDED in sent.names() and UPDATE not in sent.names()
