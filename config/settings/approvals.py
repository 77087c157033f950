"""Approvals: how long a parked tool call waits for a human."""

from __future__ import annotations

from config.env import env_bool, env_int

# A pending approval request expires this long after it was made (default 24 h); the beat
# sweep (`approvals.expire`) then resumes its turn with a rejection. Deciding later: 409.
WARDEN_APPROVAL_TTL_SECONDS = env_int("WARDEN_APPROVAL_TTL_SECONDS", 24 * 3600)
# Four eyes: whoever asked for a turn may reject its parked calls but not approve them; another
# approver must. `true` lets a requester approve their own calls (a one-person tenant).
WARDEN_APPROVAL_ALLOW_SELF = env_bool("WARDEN_APPROVAL_ALLOW_SELF", False)
