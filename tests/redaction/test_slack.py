"""Slack cards are redacted: the real Block Kit builder, posted through slack-sdk to a real
HTTP server speaking Slack's Web API, carries no PII from the parked call's arguments."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

import apps.approvals.tasks  # noqa: F401  (registers the approvals' tasks in this process)
from apps.approvals import services as approval_services
from apps.approvals import slack
from apps.approvals.models import SlackIdentity, SlackSettings
from apps.tenants.services import redaction_settings_update
from tests.approvals.conftest import ParkTurn, SentTasks
from tests.approvals.slack_server import CHANNEL, SlackServer
from tests.conftest import World

EMAIL = "jane.doe@example.com"
PHONE = "+1 (415) 555-0132"
CARD = "5500-0000-0000-0004"
IBAN = "GB82WEST12345698765432"
NINO = "AB 12 34 56 C"


@pytest.fixture
def slack_on(world: World, dave: Any) -> Iterator[SlackServer]:
    server = SlackServer()
    with override_settings(
        SLACK_BOT_TOKEN="xoxb-test-token",
        SLACK_SIGNING_SECRET="test-signing-secret-0123456789abcdef",
        SLACK_API_BASE_URL=server.base_url,
    ):
        SlackSettings.objects.create(tenant=world.tenant_a, channel_id=CHANNEL, team_id="T0ACME")
        SlackIdentity.objects.create(tenant=world.tenant_a, user=dave, slack_user_id="U0DAVE")
        yield server
    server.stop()


@pytest.mark.django_db(transaction=True)
def test_the_posted_card_carries_no_pii(
    world: World, park_turn: ParkTurn, sent: SentTasks, slack_on: SlackServer
) -> None:
    redaction_settings_update(
        tenant=world.tenant_a, custom_patterns=[{"name": "ticket", "pattern": r"TCK-\d{4}"}]
    )
    parked = park_turn(
        text=f"Refund {CARD} to {IBAN} for {EMAIL}",
        arguments={"note": f"call {PHONE}, NINO {NINO}, ticket TCK-0042, order 4111111111111112"},
    )
    assert sent.run(approval_services.SLACK_POST_TASK) == ["posted"]
    (post,) = slack_on.of("chat.postMessage")
    body = json.dumps(post.body)
    for raw in (EMAIL, PHONE, CARD, IBAN, NINO, "TCK-0042"):
        assert raw not in body, raw
    card = json.dumps(post.body["blocks"])
    for marker in ("email", "phone", "card", "iban", "national_id", "ticket"):
        assert f"[REDACTED:{marker}]" in card, marker
    assert "4111111111111112" in card  # fails Luhn: an order number, kept for the approver
    # The card still works: its buttons carry the approval's id.
    buttons = post.body["blocks"][-2]["elements"]
    assert [b["value"] for b in buttons] == [str(parked.approval.id)] * 2
    # The same builder renders the decided card (chat.update): redacted as well.
    assert EMAIL not in json.dumps(slack.card_blocks(parked.approval))
