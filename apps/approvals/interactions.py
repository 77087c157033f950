"""`POST /integrations/slack/interactions/`: Slack's buttons and modal submissions.

Before anything is read: the signature (slack-sdk's SignatureVerifier over the raw body,
with its 5-minute window), then the signature is claimed once in Redis, so a captured
request replayed inside the window is refused too. Forged, stale and replayed requests get
401 and change nothing. A click counts only from a Slack user linked to a member of the
request's tenant who may decide approvals; anyone else is told so, in Slack, and nothing
changes. Deciding is `services.approval_decide`, exactly as in the API and the console.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from typing import Any

from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt
from slack_sdk.errors import SlackClientError

from apps.approvals import services, slack
from apps.approvals.models import ApprovalRequest
from apps.core.api.errors import error_body
from apps.core.exceptions import Conflict, Forbidden, InvalidInput, NotFound
from apps.tenants.authz import Permission, allows

logger = logging.getLogger("warden.approvals")

# Slack accepts a timestamp 5 minutes either side of now: remember a signature longer.
REPLAY_WINDOW_SECONDS = 11 * 60


def replay_key(signature: str) -> str:
    return f"slack:request:{hashlib.sha256(signature.encode()).hexdigest()}"


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status)


@csrf_exempt  # Slack signs its requests instead; nothing else reaches this view
def slack_interactions(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _error(405, "method_not_allowed", "Slack interactions are POSTed.")
    if not slack.enabled():
        return _error(404, "slack_disabled", "Slack approvals are not configured here.")
    try:
        body = request.body
    except RequestDataTooBig:
        return _error(413, "payload_too_large", "Request body too large.")
    signature = request.headers.get("X-Slack-Signature")
    valid = slack.signature_valid(
        body=body, timestamp=request.headers.get("X-Slack-Request-Timestamp"), signature=signature
    )
    if not valid or not signature:
        logger.warning("slack request refused: bad or stale signature")
        return _error(401, "invalid_signature", "The Slack signature is missing, wrong or stale.")
    try:
        first = cache.add(replay_key(signature), 1, timeout=REPLAY_WINDOW_SECONDS)
    except Exception:
        logger.exception("slack replay check unavailable")
        return _error(503, "replay_check_unavailable", "Try again shortly.")
    if not first:
        logger.warning("slack request refused: replayed")
        return _error(401, "replayed_request", "This Slack request was already received.")
    payload = _payload(body)
    if payload is None:
        return _error(400, "invalid_payload", "Expected a form field `payload` holding JSON.")
    kind = payload.get("type")
    if kind == "block_actions":
        return _block_actions(payload)
    if kind == "view_submission":
        return _view_submission(payload)
    return HttpResponse(status=200)  # view_closed and the like need nothing


def _payload(body: bytes) -> dict[str, Any] | None:
    try:
        raw = QueryDict(body.decode("utf-8")).get("payload")
        payload = json.loads(raw) if raw else None
    except (UnicodeDecodeError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _approval(value: Any) -> ApprovalRequest | None:
    try:
        approval_id = uuid.UUID(str(value))
    except ValueError:
        return None
    return ApprovalRequest.objects.select_related("tenant").filter(id=approval_id).first()


def _tell(channel: str, user: str, text: str) -> None:
    services.task_send(services.SLACK_TELL_TASK, channel, user, text)


def _block_actions(payload: dict[str, Any]) -> HttpResponse:
    actions = payload.get("actions")
    action = _dict(actions[0]) if isinstance(actions, list) and actions else {}
    action_id = action.get("action_id")
    if action_id not in (slack.APPROVE_ACTION, slack.REJECT_ACTION):
        return HttpResponse(status=200)
    user = _dict(payload.get("user"))
    slack_user = str(user.get("id", ""))
    team = str(_dict(payload.get("team")).get("id") or user.get("team_id") or "")
    channel = str(
        _dict(payload.get("channel")).get("id")
        or _dict(payload.get("container")).get("channel_id")
        or ""
    )
    approval = _approval(action.get("value"))
    if approval is None:
        _tell(channel, slack_user, "This approval request does not exist (any more).")
        return HttpResponse(status=200)
    decider, why = services.slack_decider(approval=approval, slack_user_id=slack_user, team_id=team)
    if decider is None or not allows(decider.identity, Permission.APPROVAL_DECIDE):
        why = why or "Only the tenant's approvers, admins and owners may decide approvals."
        logger.warning(
            "slack decision refused",
            extra={"approval_id": str(approval.id), "slack_user": slack_user, "reason": why},
        )
        _tell(channel, slack_user, f"Not allowed: {why}")
        return HttpResponse(status=200)
    if action_id == slack.REJECT_ACTION:
        if not approval.is_pending:
            _tell(channel, slack_user, f"This request is already {approval.status}.")
            return HttpResponse(status=200)
        try:
            slack.open_reject_modal(approval, trigger_id=str(payload.get("trigger_id", "")))
        except SlackClientError:
            logger.warning("could not open the rejection modal", exc_info=True)
            _tell(channel, slack_user, "Slack did not open the form; reject in the console.")
        return HttpResponse(status=200)
    try:
        services.approval_decide(approval_id=approval.id, decider=decider, approved=True)
    except (Conflict, Forbidden, InvalidInput, NotFound) as exc:
        _tell(channel, slack_user, exc.message)
    return HttpResponse(status=200)


def _modal_error(message: str) -> JsonResponse:
    # Shown under the rationale field; the modal stays open.
    return JsonResponse(
        {"response_action": "errors", "errors": {slack.RATIONALE_BLOCK: message[:150]}}
    )


def _view_submission(payload: dict[str, Any]) -> HttpResponse:
    view = _dict(payload.get("view"))
    if view.get("callback_id") != slack.REJECT_CALLBACK:
        return HttpResponse(status=200)
    try:
        meta = _dict(json.loads(str(view.get("private_metadata") or "{}")))
    except ValueError:
        meta = {}
    approval = _approval(meta.get("approval_id"))
    if approval is None:
        return _modal_error("This approval request does not exist (any more).")
    values = _dict(_dict(view.get("state")).get("values"))
    rationale = _dict(_dict(values.get(slack.RATIONALE_BLOCK)).get(slack.RATIONALE_INPUT))
    user = _dict(payload.get("user"))
    team = str(_dict(payload.get("team")).get("id") or user.get("team_id") or "")
    decider, why = services.slack_decider(
        approval=approval, slack_user_id=str(user.get("id", "")), team_id=team
    )
    if decider is None:
        return _modal_error(f"Not allowed: {why}")
    try:
        services.approval_decide(
            approval_id=approval.id,
            decider=decider,
            approved=False,
            rationale=str(rationale.get("value") or ""),
        )
    except Forbidden:
        return _modal_error("Only the tenant's approvers, admins and owners may decide.")
    except (Conflict, InvalidInput, NotFound) as exc:
        return _modal_error(exc.message)
    return HttpResponse(status=200)  # an empty 200 closes the modal
