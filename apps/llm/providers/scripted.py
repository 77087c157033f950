"""A deterministic scripted model, for tests and for demos that must not depend on luck.

Which step to play is computed from the request alone: the number of assistant
messages since the turn's user message. So the same history always gives the same
step, in any process, and after a crash-resume that rebuilds the history from
checkpoints. Nothing is kept in memory between calls.

A script is a JSON-serialisable list of steps (so it can live in a JSON column):

    {"tool": "search", "arguments": {"q": "${last_user_message}"}, "say": "Looking it up"}
    {"calls": [{"tool": "a", "arguments": {}}, {"tool": "b", "arguments": {}}]}
    {"tool": "search", "raw_arguments": "{not json"}     -> raises MalformedOutput
    {"final": "It is ${last_tool_result}."}               -> final answer, streamed
    {"text": "{\\"action\\": \\"final\\", ...}"}            -> raw text (JSON-mode steps)
    {"error": "timeout" | "unavailable" | "bad_request"}  -> raises that provider error

Strings in `final`, `text`, `say` and in argument values are `string.Template`s over:
`last_user_message`, `last_tool_result`, `tool_result_1` … `tool_result_N` (results
in this turn, in order), `tool_results` (all of them, one per line) and `step`.

A summary request (`metadata["purpose"] == "summary"`, from context compression) is
answered apart from the script: by default one line naming what the user asked in each
summarised turn (deterministic, so tests can look for it in later prompts); the endpoint's
`options["summary"]` may instead be a template string over `transcript` (the text to
summarise), or `{"error": "timeout" | "unavailable" | "bad_request"}`.

Turn boundary: a `user` message, except one named `FEEDBACK_NAME` — the loop's own
re-prompts (validation errors) — so a re-prompt does not restart the script. For a
malformed step to be "used up", the loop must keep the rejected assistant message in
the history it re-sends (as a re-prompt normally does).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from string import Template
from typing import Any

from apps.llm.providers.base import EndpointConfig, MalformedOutput, TokenCallback
from apps.llm.types import (
    FEEDBACK_NAME,
    Message,
    ModelRequest,
    ModelResponse,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ToolCall,
    ToolSpec,
    Usage,
)

DEMO_MAX_TOOL_CALLS = 2
SUMMARY_PURPOSE = "summary"  # as apps/agents/runtime/compression.py asks
SUMMARY_LINE_CHARS = 60
_STEP_KINDS = ("tool", "calls", "final", "text", "error")
_ERRORS = {"timeout", "unavailable", "bad_request"}
_TOKEN_RE = re.compile(r"\S+\s*|\s+")


def validate_script(script: Sequence[Mapping[str, Any]]) -> None:
    """Raise ValueError naming the first bad step (for admin/REST validation)."""
    if not isinstance(script, Sequence) or isinstance(script, str | bytes):
        raise ValueError("a script is a list of steps")
    for number, step in enumerate(script, start=1):
        if not isinstance(step, Mapping):
            raise ValueError(f"step {number}: must be an object")
        kinds = [kind for kind in _STEP_KINDS if kind in step]
        if len(kinds) != 1:
            raise ValueError(f"step {number}: needs exactly one of {', '.join(_STEP_KINDS)}")
        calls = step["calls"] if "calls" in step else [step] if "tool" in step else []
        if "calls" in step and (not isinstance(calls, list) or not calls):
            raise ValueError(f"step {number}: 'calls' must be a non-empty list")
        for call in calls:
            if not isinstance(call, Mapping) or not isinstance(call.get("tool"), str):
                raise ValueError(f"step {number}: each call needs a tool name")
            if not isinstance(call.get("arguments", {}), Mapping):
                raise ValueError(f"step {number}: arguments must be an object")
        if "error" in step and step["error"] not in _ERRORS:
            raise ValueError(f"step {number}: error must be one of {sorted(_ERRORS)}")


def turn_position(messages: Sequence[Message]) -> tuple[int, int]:
    """(index of the turn's user message or -1, assistant messages since it)."""
    boundary = -1
    for index, message in enumerate(messages):
        if message.role == "user" and message.name != FEEDBACK_NAME:
            boundary = index
    steps = sum(1 for message in messages[boundary + 1 :] if message.role == "assistant")
    return boundary, steps


def estimate_tokens(text: str) -> int:
    """~4 characters a token: deterministic, so budget tests are stable."""
    return (len(text) + 3) // 4


def split_tokens(text: str) -> list[str]:
    """Word-sized pieces whose concatenation is exactly `text`."""
    return _TOKEN_RE.findall(text)


class ScriptedProvider:
    """Plays `script` (or `endpoint.options["script"]`, or the demo script)."""

    def __init__(
        self, endpoint: EndpointConfig, *, script: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        self.endpoint = endpoint
        chosen = script if script is not None else endpoint.options.get("script")
        if chosen is not None:
            validate_script(chosen)
        self.script: Sequence[Mapping[str, Any]] | None = chosen

    def close(self) -> None:
        pass

    def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        if request.metadata.get("purpose") == SUMMARY_PURPOSE:
            return self._summary(request)
        boundary, index = turn_position(request.messages)
        variables = _variables(request.messages, boundary, index)
        step = self._step(request, index, variables)
        if "error" in step:
            raise _scripted_error(self.endpoint, step["error"], index)

        text = ""
        calls: list[ToolCall] = []
        if "final" in step or "text" in step:
            text = Template(str(step.get("final", step.get("text", "")))).safe_substitute(variables)
        else:
            text = Template(str(step.get("say", ""))).safe_substitute(variables)
            specs = step["calls"] if "calls" in step else [step]
            for position, spec in enumerate(specs):
                call_id = _call_id(request.messages, boundary, index, position)
                if "raw_arguments" in spec:
                    raise self._malformed(request, spec, call_id, text)
                arguments = _render(dict(spec.get("arguments", {})), variables)
                calls.append(ToolCall(id=call_id, name=str(spec["tool"]), arguments=arguments))

        if on_token is not None:
            for piece in split_tokens(text):
                on_token(piece)
        return ModelResponse(
            text=text,
            tool_calls=tuple(calls),
            usage=self._usage(request, text, calls),
            model=self.endpoint.model,
            endpoint=self.endpoint.name,
            finish_reason="tool_calls" if calls else "stop",
            raw_text=text if not calls else repr([(c.name, c.arguments) for c in calls]),
        )

    def _summary(self, request: ModelRequest) -> ModelResponse:
        transcript = request.messages[-1].content if request.messages else ""
        option = self.endpoint.options.get("summary")
        if isinstance(option, Mapping) and option.get("error") in _ERRORS:
            raise _scripted_error(self.endpoint, str(option["error"]), 0)
        if isinstance(option, str):
            text = Template(option).safe_substitute(transcript=transcript)
        else:
            asked = [
                line[len("User: ") :].strip()[:SUMMARY_LINE_CHARS]
                for line in transcript.splitlines()
                if line.startswith("User: ")
            ]
            text = "Earlier the user asked: " + "; ".join(asked) + "." if asked else ""
        return ModelResponse(
            text=text,
            usage=Usage(input_tokens=_input_tokens(request), output_tokens=estimate_tokens(text)),
            model=self.endpoint.model,
            endpoint=self.endpoint.name,
            finish_reason="stop",
            raw_text=text,
        )

    def _step(
        self, request: ModelRequest, index: int, variables: dict[str, str]
    ) -> Mapping[str, Any]:
        script = self.script if self.script is not None else demo_script(request)
        if index < len(script):
            return script[index]
        # Past the end (the loop kept going): answer with the script's last final
        # answer, so the turn ends instead of replaying tool calls forever.
        finals = [step for step in script if "final" in step]
        return finals[-1] if finals else {"final": "(The scripted model has no more steps.)"}

    def _malformed(
        self, request: ModelRequest, spec: Mapping[str, Any], call_id: str, text: str
    ) -> MalformedOutput:
        raw = str(spec["raw_arguments"])
        response = ModelResponse(
            usage=Usage(
                input_tokens=_input_tokens(request), output_tokens=estimate_tokens(raw) or 1
            ),
            model=self.endpoint.model,
            endpoint=self.endpoint.name,
            finish_reason="tool_calls",
            raw_text=json.dumps(
                {
                    "content": text,
                    "tool_calls": [{"id": call_id, "name": spec["tool"], "arguments": raw}],
                },
                ensure_ascii=False,
            ),
        )
        return MalformedOutput(
            f"endpoint {self.endpoint.name!r}: tool call {spec['tool']!r} ({call_id}) has "
            "arguments that are not a JSON object",
            response=response,
        )

    def _usage(self, request: ModelRequest, text: str, calls: list[ToolCall]) -> Usage:
        produced = text + "".join(f"{c.name}{c.arguments!r}" for c in calls)
        return Usage(input_tokens=_input_tokens(request), output_tokens=estimate_tokens(produced))


def demo_script(request: ModelRequest) -> list[dict[str, Any]]:
    """The default script: call up to two of the offered tools, then answer.

    Arguments are made up from each tool's inputSchema (defaults, enums, a few
    name hints, otherwise the user's message), so the demo works with whatever
    tools the demo agent is given. Seed an explicit script for a fixed walk-through.
    """
    tools = list(request.tools[:DEMO_MAX_TOOL_CALLS])
    steps: list[dict[str, Any]] = [
        {
            "tool": tool.name,
            "arguments": example_arguments(tool),
            "say": f"I'll use {tool.name} for this.",
        }
        for tool in tools
    ]
    if tools:
        steps.append(
            {
                "final": "Here is what I found with "
                + ", ".join(tool.name for tool in tools)
                + ":\n${tool_results}"
            }
        )
    else:
        steps.append({"final": "(scripted demo) You said: ${last_user_message}"})
    return steps


def example_arguments(tool: ToolSpec) -> dict[str, Any]:
    """Required arguments for `tool`, made up from its schema."""
    value = _example(tool.input_schema or {}, "", depth=0)
    return value if isinstance(value, dict) else {}


_NAME_HINTS: tuple[tuple[tuple[str, ...], Any], ...] = (
    (("timezone", "tz"), "UTC"),
    (("repo_path", "repo", "path", "directory", "dir", "cwd"), "."),
    (("url", "uri"), "https://example.com"),
    (("email",), "demo@example.com"),
    (("time",), "12:00"),
)


def _example(schema: Mapping[str, Any], name: str, *, depth: int) -> Any:
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    if schema.get("examples"):
        return schema["examples"][0]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        if depth > 3:
            return {}
        properties = schema.get("properties") or {}
        return {
            key: _example(properties.get(key) or {}, key, depth=depth + 1)
            for key in schema.get("required") or []
        }
    if kind == "array":
        return []
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = max(1, int(low) + (1 if "exclusiveMinimum" in schema else 0))
        return value if kind == "integer" else float(value)
    lowered = name.lower()
    for names, hint in _NAME_HINTS:
        if lowered in names or any(lowered.endswith("_" + n) for n in names):
            return hint
    return "${last_user_message}"


def _variables(messages: Sequence[Message], boundary: int, index: int) -> dict[str, str]:
    user = messages[boundary].content if boundary >= 0 else ""
    results = [m.content for m in messages[boundary + 1 :] if m.role == "tool"]
    variables = {
        "last_user_message": user,
        "last_tool_result": results[-1] if results else "",
        "tool_results": "\n".join(results),
        "step": str(index),
    }
    for number, result in enumerate(results, start=1):
        variables[f"tool_result_{number}"] = result
    return variables


def _render(value: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return Template(value).safe_substitute(variables)
    if isinstance(value, dict):
        return {key: _render(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, variables) for item in value]
    return value


def _call_id(messages: Sequence[Message], boundary: int, index: int, position: int) -> str:
    # Stable across processes (no hash() randomisation) and distinct between two
    # turns that happen to have the same text.
    user = messages[boundary].content if boundary >= 0 else ""
    seed = f"{boundary}\x00{user}\x00{index}\x00{position}".encode()
    return "call_" + hashlib.sha256(seed).hexdigest()[:16]


def _input_tokens(request: ModelRequest) -> int:
    return sum(estimate_tokens(m.content) for m in request.messages) or 1


def _scripted_error(endpoint: EndpointConfig, kind: str, index: int) -> ProviderError:
    message = f"endpoint {endpoint.name!r}: scripted {kind} at step {index}"
    if kind == "timeout":
        return ProviderTimeout(message)
    if kind == "unavailable":
        return ProviderUnavailable(message)
    return ProviderError(message, retryable=False)
