"""Events are redacted before they are stored or published: through a real turn (the loop's
batched writes, the tool call and result, the final answer, the scratchpad's token stream),
and with a tenant's own patterns applying to that tenant only."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from apps.agents import orchestrator, services
from apps.agents.events import event_record, session_group
from apps.agents.models import SessionEvent
from apps.core.events import BATCH, publish_flush
from apps.tenants.services import redaction_settings_update
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
BAD_CARD = "4111 1111 1111 1112"  # fails Luhn: stays
PHONE = "+44 20 7946 0958"
IBAN = "DE89 3704 0044 0532 0130 00"
BAD_IBAN = "DE89 3704 0044 0532 0130 01"  # bad checksum: stays
GH_TOKEN = "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
ANT_KEY = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
SSN = "078-05-1121"
RAW = (EMAIL, CARD, PHONE, IBAN, GH_TOKEN, ANT_KEY, SSN, "jane.doe")


def _run(turn_id: Any) -> str:
    outcome = orchestrator.turn_execute(turn_id=turn_id)
    publish_flush()
    return outcome


async def _run_listening(session_id: Any, turn_id: Any) -> tuple[str, list[dict[str, Any]]]:
    """Run the turn while subscribed to its session's group, as a websocket consumer is."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(session_group(session_id), channel)
    outcome = await sync_to_async(_run)(turn_id)
    heard = []
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(channel), timeout=1.5)
            heard.extend(message["messages"] if message["type"] == BATCH else [message])
        except TimeoutError:
            return outcome, heard


def test_a_turns_events_and_token_stream_carry_no_pii(world: World, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    script = [
        {
            "tool": "append_line",
            "arguments": {
                "path": str(ledger),
                "text": "${last_user_message} refund to " + IBAN + " not " + BAD_IBAN,
            },
            "say": f"Saving {EMAIL} with key {ANT_KEY}; their SSN is {SSN}.",
        },
        {"final": "Saved for ${last_user_message}. Order " + BAD_CARD + " is no card."},
    ]
    agent = make_agent(world.tenant_a, script, tools=["append_line"], slug="pii")
    session = make_session(agent, world.alice)

    message = f"I am {EMAIL}, card {CARD}, phone {PHONE}, token {GH_TOKEN}"
    turn = services.turn_enqueue(session=session, message=message, requested_by=world.alice)
    outcome, published = async_to_sync(_run_listening)(session.id, turn.id)
    assert outcome == "completed"

    # The tool itself got the real arguments: redaction is about what leaves, not what runs.
    assert EMAIL in ledger.read_text() and IBAN in ledger.read_text()

    events = {e.type: e.payload for e in SessionEvent.objects.filter(turn=turn).order_by("id")}
    stored = json.dumps(list(events.values()))
    for raw in RAW:
        assert raw not in stored, raw
    arguments = events["tool.call"]["arguments"]["text"]
    assert arguments == (
        "I am [REDACTED:email], card [REDACTED:card], phone [REDACTED:phone], token "
        f"[REDACTED:api_key] refund to [REDACTED:iban] not {BAD_IBAN}"
    )
    assert BAD_CARD in events["turn.completed"]["final_answer"]
    assert "[REDACTED:email]" in events["turn.completed"]["final_answer"]

    # What subscribers heard: the stored events, and the token stream (the raw scratchpad).
    tokens = "".join(m["data"]["text"] for m in published if m["event"] == "model.token")
    assert "[REDACTED:api_key]" in tokens and "[REDACTED:national_id]" in tokens
    heard = json.dumps(published)
    for raw in RAW:
        assert raw not in heard, raw
    assert {m["event"] for m in published} >= {"tool.call", "tool.result", "turn.completed"}


def test_custom_patterns_apply_to_their_tenant_only(world: World) -> None:
    redaction_settings_update(
        tenant=world.tenant_a,
        custom_patterns=[{"name": "employee_id", "pattern": r"EMP-\d{6}"}],
        kinds=["phone"],  # e-mails off for tenant A
    )
    sessions = {}
    for tenant in (world.tenant_a, world.tenant_b):
        agent = make_agent(tenant, [{"final": "ok"}], slug="plain")
        sessions[tenant.slug] = make_session(agent)
    data = {"note": f"EMP-123456 at {EMAIL}, {PHONE}, {GH_TOKEN}"}
    with transaction.atomic():
        a = event_record(session=sessions["acme"], event="error", data=data)
        b = event_record(session=sessions["globex"], event="error", data=data)
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.payload["note"] == (
        f"[REDACTED:employee_id] at {EMAIL}, [REDACTED:phone], [REDACTED:api_key]"
    )
    assert b.payload["note"] == (
        "EMP-123456 at [REDACTED:email], [REDACTED:phone], [REDACTED:api_key]"
    )
