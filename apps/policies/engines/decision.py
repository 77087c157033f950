"""What a policy's value means, and how the values of several policies make one decision.

A policy's entry point must produce
    {"allow": bool, "require_approval": bool, "reasons": [str], "obligations": [...]}
(`allow` is required; the others default to false / [] / []; other keys are ignored). Anything
else — undefined, not an object, a wrong type — counts as a deny that says so.

Every applicable policy is evaluated; among the enforced ones a deny wins over an approval
requirement, which wins over allow. `report_only` policies never change the outcome: the
decision also carries the outcome it would have had if they were enforced (`would_be`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["allow", "deny", "require_approval"]
RANK: dict[str, int] = {"allow": 0, "require_approval": 1, "deny": 2}


@dataclass(frozen=True)
class PolicyResult:
    """One policy's verdict on one call, in the result shape."""

    allow: bool
    require_approval: bool = False
    reasons: tuple[str, ...] = ()
    obligations: tuple[Any, ...] = ()

    @property
    def outcome(self) -> Outcome:
        if not self.allow:
            return "deny"
        return "require_approval" if self.require_approval else "allow"

    def as_dict(self) -> dict[str, Any]:
        return {
            "allow": self.allow,
            "require_approval": self.require_approval,
            "reasons": list(self.reasons),
            "obligations": list(self.obligations),
        }

    @classmethod
    def denied(cls, reason: str) -> PolicyResult:
        return cls(allow=False, reasons=(reason,))


def shape_problem(value: Any, *, defined: bool = True) -> str | None:
    """Why `value` is not a valid result, or None when it is."""
    if not defined:
        return "its entry point is undefined for this input"
    if not isinstance(value, dict):
        return f"it returned {type(value).__name__}, not an object"
    if not isinstance(value.get("allow"), bool):
        return '"allow" must be true or false'
    if not isinstance(value.get("require_approval", False), bool):
        return '"require_approval" must be true or false'
    reasons = value.get("reasons", [])
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        return '"reasons" must be a list of strings'
    if not isinstance(value.get("obligations", []), list):
        return '"obligations" must be a list'
    return None


def result_from(value: Any, *, defined: bool = True, label: str = "the policy") -> PolicyResult:
    """The value as a result; a wrong shape is a deny whose reason says what was wrong."""
    problem = shape_problem(value, defined=defined)
    if problem is not None:
        return PolicyResult.denied(f"{label} returned a malformed decision ({problem}): denied")
    return PolicyResult(
        allow=value["allow"],
        require_approval=value.get("require_approval", False),
        reasons=tuple(value.get("reasons", [])),
        obligations=tuple(value.get("obligations", [])),
    )


@dataclass(frozen=True)
class Combined:
    outcome: Outcome
    reasons: tuple[str, ...] = ()
    obligations: tuple[Any, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "obligations": list(self.obligations),
        }


def combine(results: Iterable[PolicyResult]) -> Combined:
    """Deny beats require_approval beats allow. The reasons are those of the policies that
    decided; the obligations are every non-denying policy's (all of them apply)."""
    results = list(results)
    if not results:
        return Combined("allow")
    outcome: Outcome = max((r.outcome for r in results), key=RANK.__getitem__)
    deciding = [r for r in results if r.outcome == outcome]
    reasons = tuple(dict.fromkeys(reason for r in deciding for reason in r.reasons))
    obligations: tuple[Any, ...] = ()
    if outcome != "deny":
        obligations = tuple(o for r in results for o in r.obligations)
    return Combined(outcome, reasons, obligations)


@dataclass(frozen=True)
class Decision:
    """The decision on one call: what happens (`enforced`), what would happen if the
    report-only policies were enforced too (`would_be`), and each policy's part."""

    enforced: Combined
    would_be: Combined
    evaluations: Sequence[dict[str, Any]] = field(default_factory=tuple)

    @property
    def outcome(self) -> Outcome:
        return self.enforced.outcome

    @property
    def reason(self) -> str:
        if self.enforced.reasons:
            return "; ".join(self.enforced.reasons)
        return {"deny": "denied by policy", "require_approval": "a policy requires approval"}.get(
            self.outcome, ""
        )
