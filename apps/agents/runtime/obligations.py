"""What a budget asks of a request at 80 % of a cap: deterministic truncation, no LLM.

`apply_obligations` returns a smaller view of the request; the loop's own message history is
untouched, so a replay rebuilds exactly the same history and the obligations are applied
again the same way. `small_tier` is not here: the model port picks the tier.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from apps.llm.types import Message, ModelRequest, ToolSpec

COMPRESS_CONTEXT = "compress_context"
TRIM_TOOLS = "trim_tools"
SMALL_TIER = "small_tier"

TRIMMED = "… [trimmed to save budget]"
OMITTED = "[Earlier parts of this conversation were left out to save budget.]"
OLD_OBSERVATION_CHARS = 200
KEEP_EXCHANGES = 2
TOOL_DESCRIPTION_CHARS = 200


def _shrink(message: Message, limit: int) -> Message:
    if len(message.content) <= limit:
        return message
    return replace(message, content=message.content[:limit] + TRIMMED)


def _is_observation(message: Message) -> bool:
    return message.role == "tool" or (message.role == "user" and message.name is not None)


def compress(
    messages: tuple[Message, ...], *, keep_exchanges: int = KEEP_EXCHANGES
) -> tuple[Message, ...]:
    """Observations older than the last two shrink to 200 characters; of the history before
    the current user message only the last `keep_exchanges` exchanges stay; the system
    message says so."""
    system = [m for m in messages[:1] if m.role == "system"]
    rest = list(messages[len(system) :])
    # The current user message: the last plain user message (feedback and observations
    # carry a name).
    current = max((i for i, m in enumerate(rest) if m.role == "user" and m.name is None), default=0)
    history, turn = rest[:current], rest[current:]
    asked = [i for i, m in enumerate(history) if m.role == "user" and m.name is None]
    if keep_exchanges <= 0:
        start = len(history)
    else:
        start = asked[-keep_exchanges] if len(asked) >= keep_exchanges else 0
    kept = history[start:]
    omitted = len(kept) < len(history)
    observations = [i for i, m in enumerate(turn) if _is_observation(m)]
    old = set(observations[:-2])
    turn = [_shrink(m, OLD_OBSERVATION_CHARS) if i in old else m for i, m in enumerate(turn)]
    if omitted:
        note = Message(role="system", content=OMITTED)
        system = (
            [replace(system[0], content=f"{system[0].content}\n\n{OMITTED}")] if system else [note]
        )
    return (*system, *kept, *turn)


def trim_tools(
    tools: tuple[ToolSpec, ...], *, used: Collection[str], keep: int
) -> tuple[ToolSpec, ...]:
    """The tools already called this turn, plus the first `keep` of the rest; descriptions
    cut to 200 characters."""
    others = [t for t in tools if t.name not in used][: max(0, keep)]
    kept = {t.name for t in others} | set(used)
    return tuple(
        replace(t, description=t.description[:TOOL_DESCRIPTION_CHARS])
        for t in tools
        if t.name in kept
    )


def apply_obligations(
    request: ModelRequest,
    obligations: Collection[str],
    *,
    used: Collection[str],
    keep_tools: int,
    keep_exchanges: int = KEEP_EXCHANGES,
) -> ModelRequest:
    if COMPRESS_CONTEXT in obligations:
        messages = compress(request.messages, keep_exchanges=keep_exchanges)
        request = replace(request, messages=messages)
    if TRIM_TOOLS in obligations and request.tools:
        request = replace(request, tools=trim_tools(request.tools, used=used, keep=keep_tools))
    return request
