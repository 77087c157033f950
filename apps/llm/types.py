"""The contract between the agent loop and model providers.

Framework-free on purpose (no Django imports): the ReAct loop, the providers and
the router all speak these types, so each can be unit-tested, replayed and
benchmarked without a database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]

# `name` of the user-role messages the loop itself writes (re-prompts after
# malformed output, observations for models without native tool calls), so a
# model or a replay can tell them from what the end user said.
FEEDBACK_NAME = "warden"


@dataclass(frozen=True)
class ToolCall:
    """A tool invocation the model asked for. `arguments` is already-parsed JSON."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Message:
    """One chat message in provider-neutral form."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # set on role="tool" messages
    name: str | None = None


def observation_message(tool: str, text: str) -> Message:
    """What a model without native tool calls is told about a tool's result (`text`)."""
    return Message(role="user", content=f"{_OBSERVATION_PREFIX}{tool}: {text}", name=FEEDBACK_NAME)


def read_observation(message: Message) -> tuple[str, str] | None:
    """(tool, text) of a message `observation_message` wrote, or None for any other message;
    for providers that show tool results to their model in their own words."""
    if message.role != "user" or message.name != FEEDBACK_NAME:
        return None
    if not message.content.startswith(_OBSERVATION_PREFIX):
        return None
    tool, separator, text = message.content[len(_OBSERVATION_PREFIX) :].partition(": ")
    return (tool, text) if separator and tool else None


_OBSERVATION_PREFIX = "Observation from "


@dataclass(frozen=True)
class ToolSpec:
    """What the model is told about a tool: MCP's name, description and inputSchema."""

    name: str
    description: str
    input_schema: dict[str, Any]

    @cached_property
    def as_dict(self) -> dict[str, Any]:
        """`dataclasses.asdict(self)`, made once: a turn's specs are measured and digested
        at every model call, and asdict deep-copies the schema each time. Read only."""
        return asdict(self)

    @cached_property
    def as_json(self) -> str:
        """`json.dumps(self.as_dict)`, made once."""
        return json.dumps(self.as_dict)


def tools_json(tools: Iterable[ToolSpec]) -> str:
    """`json.dumps([asdict(spec) for spec in tools])`, from each spec's JSON made once."""
    return "[" + ", ".join(spec.as_json for spec in tools) + "]"


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    # The provider reported no usage: these are Warden's estimate.
    estimated: bool = False


@dataclass(frozen=True)
class ModelRequest:
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_output_tokens: int = 1024
    temperature: float = 0.0
    # When set (for models without native tool calling) the provider constrains
    # its output to this JSON Schema: response_format on OpenAI-compatible
    # endpoints, a grammar on llama.cpp.
    response_schema: dict[str, Any] | None = None
    timeout_s: float = 60.0
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelResponse:
    """What a provider returned. Either `tool_calls` or `text` (or both) is set.

    `raw_text` is the untouched model output, kept for the scratchpad and for
    diagnosing malformed output.
    """

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    model: str = ""
    endpoint: str = ""
    finish_reason: str = ""
    raw_text: str = ""


class ProviderError(Exception):
    """A provider call failed. `retryable` errors (timeouts, 5xx, 429) fail over.

    `code` is stable, for events and clients; `str()` is for humans.
    """

    retryable: bool = False
    code: str = "provider_error"

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class ProviderTimeout(ProviderError):
    retryable = True
    code = "provider_timeout"


class ProviderUnavailable(ProviderError):
    """5xx, rate limit, connection refused, or an open circuit breaker."""

    retryable = True
    code = "provider_unavailable"


class EndpointUnreachable(ProviderUnavailable):
    """No connection to the endpoint: refused by the egress guard, a closed port, DNS, TLS, or
    something that does not speak HTTP. One message whatever the cause, so that an endpoint's
    `base_url` cannot be used to map the platform's network; the cause is in the operator log.
    """

    code = "endpoint_unreachable"


class MalformedOutput(ProviderError):
    """The model answered, but its output can't be used as given.

    Raised (rather than returned) for tool calls whose arguments are not a JSON
    object, so that a malformed call can never be executed by a caller that only
    looks at `tool_calls`. `response` carries everything that was well-formed plus
    `raw_text`, the usage that was spent (settle the budget with it) and the
    endpoint. Not retryable on another endpoint: the loop re-prompts with the
    message instead, and may escalate the tier after repeated malformed output.
    """

    retryable = False

    def __init__(self, message: str, *, response: ModelResponse) -> None:
        super().__init__(message)
        self.response = response


class EndpointNotReady(ProviderError):
    """The endpoint exists but can't take requests yet: its local model is still building or
    starting, or it failed or is off. The message says which and why.

    Not retryable, so not a health failure either: the circuit breaker stays closed and the
    router raises it at once instead of waiting on a server that isn't there. (The router
    is given not-ready endpoints last, so a ready one in the tier answers first.)
    """

    retryable = False
    code = "endpoint_not_ready"


class NoEndpointAvailable(ProviderError):
    """The router found no endpoint that the rules allow and that is healthy."""

    retryable = False


class EndpointUnpriced(NoEndpointAvailable):
    """Endpoints would serve the request, but none has a price and none is marked free.

    Raised only when price is the whole reason: with a price (or `is_free`) on one of the
    endpoints the message names, the request would have been tried. A call nobody can
    price could cross any money budget, so the router never makes one.
    """

    code = "endpoint_unpriced"
