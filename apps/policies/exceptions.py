"""Domain errors of policies; api/errors.py maps them to HTTP."""

from __future__ import annotations

from apps.core.exceptions import Conflict, InvalidInput, Unavailable


class PolicyInvalid(InvalidInput):
    """The source does not compile; details carry the compiler's message, line and column."""

    code = "policy_invalid"


class PolicyTooLarge(InvalidInput):
    code = "policy_too_large"


class PolicyNameTaken(Conflict):
    code = "policy_name_taken"


class PolicyEngineUnavailable(Unavailable):
    """The engine could not check a source, so it is not saved (nothing unverified runs)."""

    code = "policy_engine_unavailable"
