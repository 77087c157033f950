"""The policy every tenant starts with, and the input document's shape.

The default policy is created for every new tenant (signals.py) and for tenants that existed
before policies did (migration 0002). A tenant edits it like any other policy.
"""

from __future__ import annotations

from typing import Any

DEFAULT_POLICY_NAME = "default"
# Where every policy is queried unless its author names another rule.
DEFAULT_ENTRY_POINT = "data.warden.decision"
DEFAULT_POLICY_DESCRIPTION = (
    "Shipped with Warden: critical tools are denied, high-risk tools need approval, in prod "
    "medium-risk tools too, low-risk tools run; nothing runs once the session budget is spent."
)

# Rego v1 syntax (OPA 1.x and rego-cpp read it alike). One `else` chain, so exactly one value
# comes out whatever the input: the first matching line decides. An unknown risk tier is
# denied (fail closed).
DEFAULT_POLICY_SOURCE = """\
# Warden's default policy. Edit it freely: every save is a new version.
package warden

import rego.v1

decision := deny("the session's token budget is spent") if {
	input.budget.tokens_used >= input.budget.tokens_limit
} else := deny(sprintf("tool %s is critical risk", [input.tool.name])) if {
	input.tool.risk_tier == "critical"
} else := approval(sprintf("tool %s is high risk", [input.tool.name])) if {
	input.tool.risk_tier == "high"
} else := approval(sprintf("tool %s is medium risk and this is prod", [input.tool.name])) if {
	input.tool.risk_tier == "medium"
	input.environment == "prod"
} else := allowed if {
	input.tool.risk_tier in {"low", "medium"}
} else := deny(sprintf("tool %s has an unknown risk tier", [input.tool.name]))

deny(reason) := {"allow": false, "require_approval": false, "reasons": [reason], "obligations": []}

approval(reason) := {
	"allow": true, "require_approval": true, "reasons": [reason], "obligations": [],
}

allowed := {"allow": true, "require_approval": false, "reasons": [], "obligations": []}
"""

# Every key a decision's input has (README "Policies"); a source is checked against this
# sample before it is saved, so a policy that cannot evaluate is refused up front.
SAMPLE_INPUT: dict[str, Any] = {
    "tenant": {"id": "00000000-0000-0000-0000-000000000000", "slug": "sample"},
    "user": {"id": 1, "roles": ["member"]},
    "environment": "dev",
    "agent": {"id": "00000000-0000-0000-0000-000000000000", "slug": "sample", "tier": "small"},
    "session": {
        "id": "00000000-0000-0000-0000-000000000000",
        "risk_tier": "low",
        "data_sensitivity": "internal",
    },
    "tool": {"name": "sample", "source": "builtin", "risk_tier": "low", "sensitivity": "internal"},
    "arguments": {},
    "budget": {
        "tokens_used": 0,
        "tokens_limit": 40000,
        "fraction_used": 0.0,
        "state": "ok",
        "fraction_used_max": 0.0,
        "obligations": [],
        "scopes": [
            {
                "scope": "session",
                "budget_id": None,
                "label": "agent per session",
                "period": "session",
                "window": "",
                "tokens_used": 0,
                "tokens_limit": 40000,
                "cost_used": 0.0,
                "cost_limit": None,
                "fraction_used": 0.0,
            }
        ],
    },
    "time": "2025-01-01T00:00:00Z",
}
