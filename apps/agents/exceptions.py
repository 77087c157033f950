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


class PromptTooLong(InvalidInput):
    """The prompt (system prompt, conversation, message, tools, output allowance) is larger
    than the model's context window; `details` say by how much and whether a larger-context
    model could take it."""

    code = "prompt_too_long"


class Backpressure(Unavailable):
    """The queue of turns waiting for a worker is past its hard limit (503, Retry-After)."""

    code = "backpressure"


class UnpricedEndpoints(Conflict):
    """The agent's turn could only go to endpoints with no price that are not marked free."""

    code = "endpoint_unpriced"
