from apps.core.exceptions import Conflict, InvalidInput


class SessionNotActive(Conflict):
    code = "session_not_active"


class TurnNotCancellable(Conflict):
    code = "turn_not_cancellable"


class MessageInvalid(InvalidInput):
    code = "invalid_message"


class AgentInactive(Conflict):
    code = "agent_inactive"
