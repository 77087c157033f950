from apps.core.exceptions import Conflict, InvalidInput, Unavailable


class SessionNotActive(Conflict):
    code = "session_not_active"


class TurnNotCancellable(Conflict):
    code = "turn_not_cancellable"


class MessageInvalid(InvalidInput):
    code = "invalid_message"


class AgentInactive(Conflict):
    code = "agent_inactive"


class TurnBacklogFull(Unavailable):
    """The tenant has WARDEN_MAX_QUEUED_TURNS_PER_TENANT turns waiting for a worker (503)."""

    code = "turn_backlog_full"
