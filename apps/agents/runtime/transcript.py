"""The transcript: how checkpointed records become messages again, and token estimates.

Pure functions over the loop's records and the model contract; the loop uses
them for live steps and replays alike, which is what keeps a resumed turn's
history identical to the one the crashed run had.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from apps.llm.types import (
    Message,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolSpec,
    Usage,
    tools_json,
)

from .ports import StepRecord
from .steps import Step, render_tool_instructions


def build_messages(
    *,
    system_prompt: str,
    history: Sequence[Message],
    user_message: str,
    tools: Sequence[ToolSpec],
    json_steps: bool,
) -> list[Message]:
    system = system_prompt
    if json_steps:
        system = f"{system}\n\n{render_tool_instructions(tools)}".strip()
    messages = [Message(role="system", content=system)] if system else []
    return [*messages, *history, Message(role="user", content=user_message)]


def reported_or_estimated_usage(request: ModelRequest, response: ModelResponse) -> Usage:
    """The provider's usage, or an estimate when it reported none.

    Some servers (llama.cpp while streaming) send no usage at all; a budget that
    took that as "free" would never stop such a model, so we count 4 characters
    a token instead, and say so (`estimated`).
    """
    if response.usage.input_tokens or response.usage.output_tokens:
        return response.usage
    produced = response.raw_text or response.text
    produced += "".join(json.dumps(c.arguments) + c.name for c in response.tool_calls)
    return Usage(
        input_tokens=max(1, estimate_tokens(request) - request.max_output_tokens),
        output_tokens=max(1, len(produced) // 4),
        estimated=True,
    )


def input_token_bound(request: ModelRequest) -> int:
    """An upper bound on the prompt's tokens for common tokenizers: a token is at least 3
    bytes of UTF-8 on average for them, plus 4 per message for the chat framing. What a
    budget holds for the input; a tokenizer beyond it is the overrun path."""
    total = 0
    for m in request.messages:
        size = len(m.content.encode()) + sum(
            len(json.dumps(c.arguments).encode()) + len(c.name) for c in m.tool_calls
        )
        total += -(-size // 3) + 4
    if request.tools:
        total += -(-len(tools_json(request.tools).encode()) // 3)
    if request.response_schema:
        total += -(-len(json.dumps(request.response_schema).encode()) // 3)
    return total


def estimate_tokens(request: ModelRequest) -> int:
    """A deliberately rough upper-ish bound (4 characters a token) plus the full
    output allowance: good enough to reserve against; settle corrects it."""
    chars = sum(
        len(m.content) + sum(len(json.dumps(c.arguments)) + len(c.name) for c in m.tool_calls)
        for m in request.messages
    )
    if request.tools:
        chars += len(tools_json(request.tools))
    if request.response_schema:
        chars += len(json.dumps(request.response_schema))
    return chars // 4 + request.max_output_tokens


def request_digest(request: ModelRequest) -> str:
    """A digest of everything the model is asked (messages, tools, schema, allowance). It is
    recorded on the model-call node, so a replay can tell whether the model would be asked
    exactly the same thing again without the record keeping the prompt itself."""
    shown = {
        "messages": [_message_dict(m) for m in request.messages],
        "tools": [t.as_dict for t in request.tools],
        "max_output_tokens": request.max_output_tokens,
        "temperature": request.temperature,
        "response_schema": request.response_schema,
    }
    canonical = json.dumps(shown, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _message_dict(message: Message) -> dict[str, Any]:
    """`dataclasses.asdict(message)` without its deep copies (the digest only reads it)."""
    return {
        "role": message.role,
        "content": message.content,
        "tool_calls": [
            {"id": call.id, "name": call.name, "arguments": call.arguments}
            for call in message.tool_calls
        ],
        "tool_call_id": message.tool_call_id,
        "name": message.name,
    }


def step_from_record(record: StepRecord) -> Step:
    return Step(
        thought=record.scratchpad.get("thought", ""),
        rationale=record.outputs["rationale"],
        tool_calls=tuple(ToolCall(**call) for call in record.outputs["tool_calls"]),
        final_answer=record.outputs["final_answer"],
    )


def assistant_message(record: StepRecord) -> Message:
    """The model's accepted reply as it goes into the history (live and replayed alike)."""
    text = record.scratchpad.get("text", "")
    if record.outputs["native"]:
        calls = tuple(ToolCall(**call) for call in record.outputs["tool_calls"])
        return Message(role="assistant", content=text, tool_calls=calls)
    return Message(role="assistant", content=text)


def malformed_reply(record: StepRecord) -> str:
    """What the model said in a rejected attempt, echoed back so it can correct it.
    Invalid native tool calls are echoed as JSON text: sent as real tool calls
    they would need tool results the loop never produced."""
    text = record.scratchpad.get("text", "")
    attempted = record.outputs.get("attempted_calls") or []
    if attempted:
        calls = [{"tool": c["name"], "arguments": c["arguments"]} for c in attempted]
        text = f"{text}\n{json.dumps(calls)}".strip()
    return text or "(empty reply)"


def jsonable(value: Any) -> Any:
    """Tool output as plain JSON, so it can be checkpointed and replayed."""
    return json.loads(json.dumps(value, default=str))
