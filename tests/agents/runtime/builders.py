"""Small builders for scripted model replies and a standard tool set."""

from __future__ import annotations

import itertools
import json
from typing import Any

from apps.agents.runtime.memory import DictTools
from apps.llm.types import ModelResponse, ToolCall, Usage

USAGE = Usage(input_tokens=10, output_tokens=5)

ADD_SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
_ids = itertools.count()


def calls(*pairs: tuple[str, dict[str, Any]], text: str = "") -> ModelResponse:
    """A native tool-calling reply."""
    tool_calls = tuple(
        ToolCall(id=f"native-{next(_ids)}", name=name, arguments=args) for name, args in pairs
    )
    return ModelResponse(text=text, tool_calls=tool_calls, usage=USAGE, endpoint="scripted")


def answer(text: str) -> ModelResponse:
    """A plain-text reply: the final answer in native mode, a JSON step in json mode."""
    return ModelResponse(text=text, raw_text=text, usage=USAGE, endpoint="scripted")


def json_action(
    tool: str, arguments: dict[str, Any], thought: str = "Using a tool."
) -> ModelResponse:
    return answer(
        json.dumps({"thought": thought, "action": {"tool": tool, "arguments": arguments}})
    )


def json_final(final: str, thought: str = "Done.") -> ModelResponse:
    return answer(json.dumps({"thought": thought, "final_answer": final}))


def standard_tools() -> DictTools:
    return (
        DictTools()
        .add(
            "add", lambda a, b: a + b, input_schema=ADD_SCHEMA, description="Adds.", idempotent=True
        )
        .add(
            "weather",
            lambda city: {"city": city, "temp_c": 21},
            input_schema=WEATHER_SCHEMA,
            description="Current weather.",
            idempotent=True,
        )
    )
