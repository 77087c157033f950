"""The step schema: what one model reply must look like before anything runs.

Two shapes are accepted:
- native tool calls (`ModelResponse.tool_calls`), each validated against its
  tool's `inputSchema`; plain text without tool calls is the final answer;
- for models without native tool calling, a JSON ReAct step in the text:
  `{"thought": "...", "action": {"tool": "...", "arguments": {...}}}` or
  `{"thought": "...", "final_answer": "..."}`. `build_step_schema` gives the
  JSON Schema a provider constrains the output with (response_format, grammar).

Anything else raises `MalformedStep` with a message written for the model to
read in a re-prompt, so it says what was wrong and where.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from apps.llm.types import ModelResponse, ToolCall, ToolSpec

RATIONALE_LIMIT = 160


class MalformedStep(ValueError):
    """The model's reply is not a valid step; the message says why."""


@dataclass(frozen=True)
class Step:
    """A validated step: either tool calls or a final answer.

    `thought` is the model's full reasoning (private scratchpad); `rationale` is
    the short version end users are shown.
    """

    thought: str
    rationale: str
    tool_calls: tuple[ToolCall, ...] = ()
    final_answer: str | None = None


def short_rationale(thought: str, limit: int = RATIONALE_LIMIT) -> str:
    """The first sentence of the thought, capped: enough to follow along, while
    the rest of the reasoning stays in the scratchpad."""
    text = " ".join(thought.split())
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    first = match.group(1) if match else text
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def _arguments_schema(tool: ToolSpec) -> dict[str, Any]:
    # An empty inputSchema still means "an object of arguments".
    return tool.input_schema or {"type": "object"}


def build_step_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """JSON Schema of one ReAct step: a final answer, or exactly one action.

    One `oneOf` branch per tool, with `tool` fixed by `const`, so the tool name is
    effectively an enum and each tool's arguments are checked against its own
    inputSchema. (A `$ref` inside an inputSchema that points at its own root
    does not survive being embedded here; MCP tool schemas rarely use one.)
    """
    final = {
        "type": "object",
        "properties": {
            "thought": {"type": "string"},
            "final_answer": {"type": "string", "minLength": 1},
        },
        "required": ["thought", "final_answer"],
        "additionalProperties": False,
    }
    actions = [
        {
            "type": "object",
            "properties": {
                "thought": {"type": "string"},
                "action": {
                    "type": "object",
                    "properties": {
                        "tool": {"const": tool.name},
                        "arguments": _arguments_schema(tool),
                    },
                    "required": ["tool", "arguments"],
                    "additionalProperties": False,
                },
            },
            "required": ["thought", "action"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    return {"oneOf": [final, *actions]}


def render_tool_instructions(tools: Sequence[ToolSpec]) -> str:
    """System-prompt text telling a model without native tool calling what it may do."""
    lines = [
        "Reply with exactly one JSON object and nothing else, either",
        '{"thought": "<your reasoning>", "action": {"tool": "<tool name>", "arguments": {...}}}',
        'or {"thought": "<your reasoning>", "final_answer": "<answer for the user>"}.',
        "Available tools:",
    ]
    for tool in tools:
        schema = json.dumps(_arguments_schema(tool), sort_keys=True)
        lines.append(f"- {tool.name}: {tool.description} Arguments schema: {schema}")
    if not tools:
        lines.append("- (none: give a final answer)")
    return "\n".join(lines)


# Checks the envelope only; arguments are checked per tool afterwards so that the
# error message can name the tool and the argument (a failed `oneOf` only says
# "is not valid under any of the given schemas").
_ENVELOPE = Draft202012Validator(
    {
        "type": "object",
        "properties": {
            "thought": {"type": "string"},
            "final_answer": {"type": "string", "minLength": 1},
            "action": {
                "type": "object",
                "properties": {"tool": {"type": "string"}, "arguments": {"type": "object"}},
                "required": ["tool", "arguments"],
                "additionalProperties": False,
            },
        },
        "required": ["thought"],
        "additionalProperties": False,
    }
)

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def _describe(errors: Sequence[ValidationError], limit: int = 3) -> str:
    ordered = sorted(errors, key=lambda e: (list(e.absolute_path), e.message))
    parts = [f"{e.json_path}: {e.message}" for e in ordered[:limit]]
    if len(ordered) > limit:
        parts.append(f"and {len(ordered) - limit} more")
    return "; ".join(parts)


@functools.lru_cache(maxsize=1024)
def _validator(schema_json: str) -> Validator:
    """A checked validator per distinct schema, built once per process.

    Checking a schema against its metaschema costs milliseconds; every turn of
    every agent would otherwise pay it again for the same catalog schemas.
    """
    schema = json.loads(schema_json)
    cls = validator_for(schema, default=Draft202012Validator)
    # A broken inputSchema is a catalog bug, not the model's fault: fail loudly.
    cls.check_schema(schema)
    return cls(schema)


class StepParser:
    """Turns a `ModelResponse` into a validated `Step` for one agent's tools.

    `json_steps=True` for models without native tool calling: text must then be
    a JSON step. Native tool calls are accepted (and validated) in both modes.
    """

    def __init__(self, tools: Sequence[ToolSpec], *, json_steps: bool = False) -> None:
        self.json_steps = json_steps
        self._validators: dict[str, Validator] = {
            tool.name: _validator(json.dumps(_arguments_schema(tool), sort_keys=True))
            for tool in tools
        }

    def parse(self, response: ModelResponse, *, call_id_prefix: str = "call-") -> Step:
        thought = response.text.strip()
        if response.tool_calls:
            calls = tuple(
                self._checked(call.name, call.arguments, call.id or f"{call_id_prefix}{i}")
                for i, call in enumerate(response.tool_calls)
            )
            return Step(thought=thought, rationale=short_rationale(thought), tool_calls=calls)
        if self.json_steps:
            return self._parse_json_step(thought, call_id=f"{call_id_prefix}0")
        if not thought:
            raise MalformedStep("the reply was empty: call a tool or give a final answer")
        return Step(thought="", rationale="", final_answer=thought)

    def _parse_json_step(self, text: str, *, call_id: str) -> Step:
        fenced = _FENCE.match(text)  # small models like to wrap JSON in a code fence
        if fenced:
            text = fenced.group(1)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MalformedStep(
                f"the reply is not valid JSON ({exc.msg} at line {exc.lineno} column "
                f"{exc.colno}); reply with one JSON object holding 'thought' and either "
                "'action' or 'final_answer'"
            ) from None
        errors = list(_ENVELOPE.iter_errors(data))
        if errors:
            raise MalformedStep(f"the step does not match the schema: {_describe(errors)}")
        has_action, has_final = "action" in data, "final_answer" in data
        if has_action == has_final:
            raise MalformedStep("a step must have exactly one of 'action' or 'final_answer'")
        thought = data["thought"]
        if has_final:
            return Step(
                thought=thought,
                rationale=short_rationale(thought),
                final_answer=data["final_answer"],
            )
        action = data["action"]
        call = self._checked(action["tool"], action["arguments"], call_id)
        return Step(thought=thought, rationale=short_rationale(thought), tool_calls=(call,))

    def _checked(self, name: str, arguments: Any, call_id: str) -> ToolCall:
        validator = self._validators.get(name)
        if validator is None:
            available = ", ".join(sorted(self._validators)) or "none"
            raise MalformedStep(f"unknown tool {name!r}; available tools: {available}")
        errors = list(validator.iter_errors(arguments))
        if errors:
            raise MalformedStep(f"invalid arguments for tool {name!r}: {_describe(errors)}")
        return ToolCall(id=call_id, name=name, arguments=arguments)
