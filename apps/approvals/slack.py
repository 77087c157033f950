"""Slack through slack-sdk: the approval card (Block Kit), the rejection modal, ephemeral
notes to the person who clicked, and the request-signature check.

Everything that posts runs in Celery tasks after commit (services.py); only `views.open`
runs inside the interaction request, because its trigger_id is valid for 3 seconds.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.signature import Clock, SignatureVerifier

from apps.approvals.arguments import summary_text
from apps.core.redaction import redact_payload, redact_text

if TYPE_CHECKING:
    from apps.approvals.models import ApprovalRequest

APPROVE_ACTION = "approval_approve"
REJECT_ACTION = "approval_reject"
REJECT_CALLBACK = "approval_reject"
RATIONALE_BLOCK = "rationale"
RATIONALE_INPUT = "rationale_input"

# Slack's own clock check (5 minutes) runs against this; tests replace it.
clock: Clock = Clock()


def enabled() -> bool:
    return bool(settings.SLACK_BOT_TOKEN and settings.SLACK_SIGNING_SECRET)


def client() -> WebClient:
    return WebClient(
        token=settings.SLACK_BOT_TOKEN,
        base_url=settings.SLACK_API_BASE_URL,
        timeout=max(1, round(settings.SLACK_TIMEOUT_SECONDS)),
    )


def signature_valid(*, body: bytes, timestamp: str | None, signature: str | None) -> bool:
    """Slack's signature over the raw body, within its 5-minute window (SignatureVerifier)."""
    verifier = SignatureVerifier(settings.SLACK_SIGNING_SECRET, clock=clock)
    try:
        return verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except (ValueError, UnicodeDecodeError):  # a timestamp that is no number, a body not UTF-8
        return False


def escape(text: Any) -> str:
    """Slack's mrkdwn escaping: user text never becomes a link or an @channel."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:150] or " ", "emoji": False}


def _tokens(context: dict[str, Any]) -> str:
    used = int(context.get("input_tokens", 0)) + int(context.get("output_tokens", 0))
    return f"{used:,}"


def card_blocks(approval: ApprovalRequest) -> list[dict[str, Any]]:
    """The Block Kit card, scrubbed with the tenant's redaction: arguments, reasons, names and
    rationale may all carry PII or credentials, and Slack is outside the platform."""
    return cast(list[dict[str, Any]], redact_payload(_card_blocks(approval), approval.tenant_id))


def _card_blocks(approval: ApprovalRequest) -> list[dict[str, Any]]:
    context = approval.context or {}
    elapsed_s = int(context.get("elapsed_ms", 0)) / 1000
    fields = [
        ("Agent", context.get("agent", "?")),
        ("User", context.get("user") or "—"),
        ("Tool", approval.tool_name),
        ("Environment", context.get("environment", "?")),
        ("Tokens so far", _tokens(context)),
        ("Cost so far", f"${context.get('cost_usd', '0')}"),
        ("Time so far", f"{elapsed_s:.1f} s"),
        ("Expires", approval.expires_at.strftime("%Y-%m-%d %H:%M UTC")),
    ]
    reasons = "\n".join(f"• {escape(r)}" for r in approval.reasons) or "—"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(f"Approval needed: {approval.tool_name}")},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{name}*\n{escape(value)}"} for name, value in fields
            ],
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*Arguments (redacted)*\n```"
                + escape(summary_text(approval.arguments_summary, limit=2500))
                + "```",
            },
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Why*\n{reasons}"}},
    ]
    if approval.is_pending:
        blocks.append(
            {
                "type": "actions",
                "block_id": "approval_actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE_ACTION,
                        "style": "primary",
                        "text": _plain("Approve"),
                        "value": str(approval.id),
                    },
                    {
                        "type": "button",
                        "action_id": REJECT_ACTION,
                        "style": "danger",
                        "text": _plain("Reject"),
                        "value": str(approval.id),
                    },
                ],
            }
        )
    else:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": outcome_text(approval)}}
        )
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"Warden approval `{approval.id}`"}],
        }
    )
    return blocks


def outcome_text(approval: ApprovalRequest) -> str:
    rationale = f": {escape(approval.rationale)}" if approval.rationale else ""
    if approval.status == "approved":
        return f":white_check_mark: *Approved* by {escape(approval.approver)}{rationale}"
    if approval.status == "rejected":
        return f":x: *Rejected* by {escape(approval.approver)}{rationale}"
    return f":hourglass: *Expired*{rationale}"


def fallback_text(approval: ApprovalRequest) -> str:
    agent = (approval.context or {}).get("agent", "an agent")
    if approval.is_pending:
        text = f"Approval needed: {approval.tool_name} for {agent}"
    else:
        text = f"{approval.tool_name} for {agent}: {approval.status}"
    return redact_text(text, approval.tenant_id)


def post_card(approval: ApprovalRequest, *, channel: str) -> tuple[str, str]:
    response = client().chat_postMessage(
        channel=channel, text=fallback_text(approval), blocks=card_blocks(approval)
    )
    return str(response["channel"]), str(response["ts"])


def update_card(approval: ApprovalRequest) -> None:
    client().chat_update(
        channel=approval.slack_channel,
        ts=approval.slack_ts,
        text=fallback_text(approval),
        blocks=card_blocks(approval),
    )


def reject_modal(approval: ApprovalRequest) -> dict[str, Any]:
    return cast(dict[str, Any], redact_payload(_reject_modal(approval), approval.tenant_id))


def _reject_modal(approval: ApprovalRequest) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": REJECT_CALLBACK,
        "private_metadata": json.dumps({"approval_id": str(approval.id)}),
        "title": _plain("Reject tool call"),
        "submit": _plain("Reject"),
        "close": _plain("Cancel"),
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"Reject *{escape(approval.tool_name)}*? The agent is told why.",
                },
            },
            {
                "type": "input",
                "block_id": RATIONALE_BLOCK,
                "label": _plain("Rationale"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": RATIONALE_INPUT,
                    "multiline": True,
                    "max_length": 2000,
                },
            },
        ],
    }


def open_reject_modal(approval: ApprovalRequest, *, trigger_id: str) -> None:
    client().views_open(trigger_id=trigger_id, view=reject_modal(approval))


def tell(*, channel: str, user: str, text: str) -> None:
    """An ephemeral note only `user` sees, in `channel`."""
    client().chat_postEphemeral(channel=channel, user=user, text=redact_text(text))
