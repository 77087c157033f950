"""Tool calls parked for a human's approval: how a turn waits, and how it resumes.

    loop ── the policy gate says require_approval: the node is saved `waiting_approval`,
            the loop stops with TurnOutcome(status="waiting_approval", pending=…)
    orchestrator ── creates the ApprovalRequest (apps.approvals), sets the turn `waiting`
            (outcome "waiting_approval") with a `turn.waiting` event carrying the approval
            id, in one transaction; the worker is free
    apps.approvals ── one decision (API, console, Slack or expiry), then, after commit,
            the task `agents.approval_decided` (named there, registered here)
    turn_resume_on_decision ── `approval.decided` on the timeline, the turn back to queued,
            dispatched
    orchestrator ── `approval_decision_for(turn)` hands the loop the decision: approved →
            the call runs once (its "started" checkpoint makes a crash during it visible);
            rejected or expired → it never runs, and the model is told why

Nothing here trusts the message that triggered it: each step re-reads the request and the
turn under a lock, so a duplicate, late or lost task changes nothing (a lost one is found by
`approval_turns_recover`).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.agents import services as agent_services
from apps.agents.events import event_record
from apps.agents.models import ActionNode, Turn, TurnStatus
from apps.agents.runtime.ports import ApprovalDecision
from apps.approvals import selectors as approval_selectors
from apps.approvals.arguments import arguments_digest
from apps.approvals.models import ApprovalRequest, ApprovalStatus

logger = logging.getLogger("warden.agents")

WAITING_OUTCOME = "waiting_approval"
PARKED_STATUS = "waiting_approval"  # the loop's status of a parked tool-call node


def _parked_node(turn: Turn) -> ActionNode | None:
    return (
        ActionNode.objects.filter(
            tenant_id=turn.tenant_id, turn=turn, kind="tool_call", status=PARKED_STATUS
        )
        .order_by("position")
        .first()
    )


def approval_decision_for(turn: Turn) -> ApprovalDecision | None:
    """The decision for the call this turn is parked on, if one was made; else None (the
    loop then parks again on the same call, and the same request is found)."""
    if turn.attempts <= 1:
        return None  # the turn's first run (the orchestrator counted it): nothing is parked yet
    node = _parked_node(turn)
    if node is None:
        return None
    approval = approval_selectors.approval_for_call(
        tenant_id=turn.tenant_id, turn_id=turn.id, call_key=node.node_id
    )
    if approval is None or approval.status == ApprovalStatus.PENDING:
        return None
    if approval.status == ApprovalStatus.APPROVED:
        # What was approved is what runs: the call on the node must still be the one the
        # approver saw (its digest), or it is refused.
        if arguments_digest(node.inputs.get("arguments")) != approval.arguments_digest:
            logger.error(
                "approved call changed", extra={"turn_id": str(turn.id), "node": node.node_id}
            )
            return ApprovalDecision(
                call_key=node.node_id,
                approved=False,
                approver="warden",
                rationale="the call's arguments are not the ones that were approved",
            )
        return ApprovalDecision(
            call_key=node.node_id,
            approved=True,
            approver=approval.approver,
            rationale=approval.rationale,
        )
    if approval.status == ApprovalStatus.EXPIRED:
        return ApprovalDecision(
            call_key=node.node_id,
            approved=False,
            approver="no one (expired)",
            rationale=approval.rationale or "the approval request expired",
        )
    return ApprovalDecision(
        call_key=node.node_id,
        approved=False,
        approver=approval.approver,
        rationale=approval.rationale,
    )


def decided_event_payload(approval: ApprovalRequest) -> dict[str, object]:
    return {
        "turn_id": str(approval.turn_id),
        "approval_id": str(approval.id),
        "node_id": approval.call_key,
        "tool": approval.tool_name,
        "status": approval.status,
        "approver": approval.approver,
        "via": approval.decided_via,
        "rationale": approval.rationale,
        "decided_at": approval.decided_at.isoformat() if approval.decided_at else None,
    }


def turn_resume_on_decision(*, approval_id: uuid.UUID | str) -> str:
    """Requeue the turn parked on this (decided) request, once; returns what happened."""
    approval = ApprovalRequest.objects.filter(id=approval_id).first()
    if approval is None:
        return "missing"
    if approval.status == ApprovalStatus.PENDING:
        return "pending"
    with transaction.atomic():
        turn = (
            Turn.objects.select_for_update()
            .select_related("session")
            .filter(id=approval.turn_id, tenant_id=approval.tenant_id)
            .first()
        )
        if turn is None:
            return "missing_turn"
        if turn.status != TurnStatus.WAITING or turn.outcome != WAITING_OUTCOME:
            return "not_waiting"  # resumed already, or cancelled
        parked = _parked_node(turn)
        if parked is None or parked.node_id != approval.call_key:
            return "not_waiting"  # a late message about an earlier call of this turn
        event_record(
            session=turn.session,
            turn=turn,
            event="approval.decided",
            data=decided_event_payload(approval),
        )
        turn.status = TurnStatus.QUEUED
        turn.outcome = ""
        turn.detail = ""
        turn.save(update_fields=["status", "outcome", "detail", "updated_at"])
        turn_id = turn.id
        # Looked up at call time so tests can keep turns away from workers.
        transaction.on_commit(lambda: agent_services.turn_dispatch(turn_id=turn_id))
    return "resumed"


def approval_turns_recover() -> int:
    """Resume turns still waiting on a request decided a while ago (the decision's message
    was lost: broker outage, a worker killed before it ran). Safe to over-resume."""
    waiting = list(
        Turn.objects.filter(status=TurnStatus.WAITING, outcome=WAITING_OUTCOME).values_list(
            "id", flat=True
        )
    )
    if not waiting:
        return 0
    stale = timezone.now() - timedelta(seconds=settings.WARDEN_TURN_STALE_SECONDS)
    decided = approval_selectors.approvals_decided_for_turns(turn_ids=waiting).filter(
        decided_at__lt=stale
    )
    count = 0
    for approval_id in decided.values_list("id", flat=True):
        if turn_resume_on_decision(approval_id=approval_id) == "resumed":
            count += 1
    return count
