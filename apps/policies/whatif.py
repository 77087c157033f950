"""Policy what-if: what a version of a policy would have decided on the tool calls already made.

Each recorded `policy.decision` node keeps the input document the gate built for its call (with
argument values redacted; the reader puts the call's real arguments back from its tool-call
node). A what-if evaluates the chosen version on those inputs and recombines it with what the
*other* policies decided at the time (as recorded), as if the version were enforced:

    new decision = combine(recorded enforced results of the other policies + the version's result)

so the report isolates this version's effect before anyone switches it to enforce. A decision
that changes is listed with the call (session, turn, node, tool, argument shapes), the old
and new outcome and the reasons. A version that fails to evaluate on any input (compile error,
timeout, malformed result) stops the what-if with 400 `policy_eval_failed`: a report that
quietly counted those as denials would be a report of nothing (fail closed).

The recorded calls live in apps.agents, which sits above this app: agents registers a reader
here (`recorded_decisions_register`, from `AgentsConfig.ready()`), as it does for budgets.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings

from apps.core.exceptions import InvalidInput, NotFound
from apps.policies import services
from apps.policies.engines.decision import PolicyResult, combine, shape_problem
from apps.policies.models import Policy, PolicyMode, PolicyVersion


class PolicyEvalFailed(InvalidInput):
    """The version could not be evaluated on a recorded input: no report (fail closed)."""

    code = "policy_eval_failed"


@dataclass(frozen=True)
class RecordedDecision:
    """One recorded gate decision on one tool call, as the agents app reads it back."""

    session_id: str
    turn_id: str
    turn_seq: int
    node_id: str  # the tool call's node (the decision's node is `<node_id>:policy`)
    step_index: int
    call_index: int | None
    agent_slug: str
    tool: str
    input_doc: dict[str, Any]  # as the gate built it; arguments restored when known
    arguments_summary: Any  # the redacted shapes, never values
    arguments_restored: bool
    outcome: str
    reasons: list[str]
    policies: list[dict[str, Any]]  # the recorded evaluations (name, version, mode, result…)
    recorded_at: datetime
    cursor: str  # where to resume after this decision


@dataclass(frozen=True)
class DecisionQuery:
    """Which recorded decisions to read: some sessions, or all since a time; after a cursor."""

    tenant_id: uuid.UUID
    session_ids: Sequence[uuid.UUID] | None
    since: datetime | None
    after: str | None
    limit: int


Reader = Callable[[DecisionQuery], list[RecordedDecision]]
SessionCheck = Callable[[uuid.UUID, Sequence[uuid.UUID]], set[uuid.UUID]]

_reader: list[Reader] = []
_sessions: list[SessionCheck] = []


def recorded_decisions_register(reader: Reader, sessions: SessionCheck) -> None:
    """Agents give the reader of recorded decisions and the check of session ids (the ids
    among those given that are sessions of the tenant)."""
    _reader[:] = [reader]
    _sessions[:] = [sessions]


@dataclass
class WhatIfReport:
    policy_id: str
    policy: str
    version: int
    version_mode: str
    evaluated: int = 0
    in_scope: int = 0
    skipped: int = 0  # recorded without an input (the engine failed then): nothing to replay
    changed: list[dict[str, Any]] = field(default_factory=list)
    transitions: Counter[str] = field(default_factory=Counter)
    truncated: bool = False
    next_after: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy_id": self.policy_id,
            "policy": self.policy,
            "version": self.version,
            "version_mode": self.version_mode,
            "evaluated": self.evaluated,
            "in_scope": self.in_scope,
            "skipped": self.skipped,
            "changed_count": len(self.changed),
            "transitions": dict(sorted(self.transitions.items())),
            "truncated": self.truncated,
            "next_after": self.next_after,
            "changed": self.changed,
        }


def what_if_version(*, policy: Policy, number: int | None) -> PolicyVersion:
    """The version a what-if evaluates: the one numbered `number`; by default the newest
    version that is not enforced (a draft: saved `report_only` or `disabled`, the one about
    to be switched on), else the current one."""
    versions = PolicyVersion.objects.filter(tenant_id=policy.tenant_id, policy=policy)
    if number is not None:
        version = versions.filter(number=number).first()
        if version is None:
            raise NotFound(f"The policy has no version {number}.", code="version_not_found")
        return version
    draft = versions.exclude(mode=PolicyMode.ENFORCE).order_by("-number").first()
    if draft is not None:
        return draft
    if policy.current_version is None:
        raise InvalidInput("The policy has no version yet.", code="policy_unversioned")
    return policy.current_version


def _in_scope(version: PolicyVersion, decision: RecordedDecision) -> bool:
    return version.agent_slug in ("", decision.agent_slug) and version.tool_name in (
        "",
        decision.tool,
    )


def _recorded_result(evaluation: dict[str, Any]) -> PolicyResult:
    result = evaluation.get("result") or {}
    return PolicyResult(
        allow=bool(result.get("allow", False)),
        require_approval=bool(result.get("require_approval", False)),
        reasons=tuple(str(r) for r in result.get("reasons", [])),
        obligations=tuple(result.get("obligations", [])),
    )


def policy_what_if(
    *,
    policy: Policy,
    version_number: int | None = None,
    session_ids: Sequence[uuid.UUID] | None = None,
    since: datetime | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> WhatIfReport:
    """Evaluate a version of `policy` on the tenant's recorded tool calls (of `session_ids`,
    or since `since`) and report every decision that would change. At most `limit` recorded
    decisions are read (WARDEN_WHATIF_MAX_DECISIONS); `truncated` and `next_after` say
    where to go on."""
    if (session_ids is None) == (since is None):
        raise InvalidInput('Give either "sessions" or "since".', code="what_if_window")
    cap = settings.WARDEN_WHATIF_MAX_DECISIONS
    limit = cap if limit is None else max(1, min(limit, cap))
    if session_ids is not None:
        session_ids = list(dict.fromkeys(session_ids))
        if len(session_ids) > settings.WARDEN_WHATIF_MAX_SESSIONS:
            raise InvalidInput(
                f"At most {settings.WARDEN_WHATIF_MAX_SESSIONS} sessions per what-if.",
                code="too_many_sessions",
                details={"max_sessions": settings.WARDEN_WHATIF_MAX_SESSIONS},
            )
        known = _sessions[0](policy.tenant_id, session_ids) if _sessions else set()
        unknown = [str(s) for s in session_ids if s not in known]
        if unknown:
            # The same answer for another tenant's session as for none at all.
            raise InvalidInput(
                "Unknown sessions.", code="unknown_session", details={"sessions": unknown}
            )
    version = what_if_version(policy=policy, number=version_number)
    report = WhatIfReport(
        policy_id=str(policy.id),
        policy=policy.name,
        version=version.number,
        version_mode=version.mode,
    )
    reader = _reader[0] if _reader else (lambda query: [])
    # One more than the limit tells whether there is more.
    decisions = reader(
        DecisionQuery(
            tenant_id=policy.tenant_id,
            session_ids=session_ids,
            since=since,
            after=after,
            limit=limit + 1,
        )
    )
    if len(decisions) > limit:
        decisions = decisions[:limit]
        report.truncated = True
        report.next_after = decisions[-1].cursor
    label = f"policy {policy.name!r} v{version.number}"
    for decision in decisions:
        report.evaluated += 1
        if not decision.input_doc:
            report.skipped += 1
            continue
        others = [
            _recorded_result(e)
            for e in decision.policies
            if e.get("policy_id") != str(policy.id) and e.get("mode") == PolicyMode.ENFORCE
        ]
        new_result: PolicyResult | None = None
        if _in_scope(version, decision):
            report.in_scope += 1
            run = services.version_run(version=version, input_doc=decision.input_doc, label=label)
            problem = run.error or shape_problem(run.value, defined=run.defined)
            if problem is not None:
                raise PolicyEvalFailed(
                    f"{label} could not be evaluated on a recorded call ({problem}); "
                    "nothing is reported (fail closed).",
                    details={
                        "session": decision.session_id,
                        "turn": decision.turn_id,
                        "node_id": decision.node_id,
                        "error": problem,
                        "reasons": list(run.result.reasons),
                    },
                )
            new_result = run.result
        new = combine([*others, *([new_result] if new_result is not None else [])])
        if new.outcome == decision.outcome:
            continue
        report.transitions[f"{decision.outcome}->{new.outcome}"] += 1
        report.changed.append(
            {
                "call": {
                    "session": decision.session_id,
                    "turn": decision.turn_id,
                    "turn_seq": decision.turn_seq,
                    "node_id": decision.node_id,
                    "step_index": decision.step_index,
                    "call_index": decision.call_index,
                    "tool": decision.tool,
                    "arguments": decision.arguments_summary,
                    "arguments_restored": decision.arguments_restored,
                    "recorded_at": decision.recorded_at.isoformat(),
                },
                "old": {"outcome": decision.outcome, "reasons": decision.reasons},
                "new": {"outcome": new.outcome, "reasons": list(new.reasons)},
                "version_result": (
                    None
                    if new_result is None
                    else {"outcome": new_result.outcome, "reasons": list(new_result.reasons)}
                ),
            }
        )
    return report
