"""A request's size bounds and digest: made from each tool spec's JSON built once, and still
exactly what they were with `dataclasses.asdict` (a digest recorded by an older release must
match the same request asked again, or a replay would call it a different one)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from apps.agents.runtime.transcript import estimate_tokens, input_token_bound, request_digest
from apps.llm.tokens import count_messages
from apps.llm.types import Message, ModelRequest, ToolCall, ToolSpec


def _request() -> ModelRequest:
    tools = (
        ToolSpec(
            name="calculator",
            description="Évalue une expression — «6 * 7»",
            input_schema={
                "type": "object",
                "properties": {"expression": {"type": "string", "maxLength": 200}},
                "required": ["expression"],
            },
        ),
        ToolSpec(name="clock_now", description="", input_schema={"type": "object"}),
    )
    messages = (
        Message(role="system", content="Be brief."),
        Message(role="user", content="What is 6 * 7, and the time?"),
        Message(
            role="assistant",
            content="Working.",
            tool_calls=(ToolCall(id="c1", name="calculator", arguments={"expression": "6*7"}),),
        ),
        Message(role="tool", content="42", tool_call_id="c1", name="calculator"),
    )
    return ModelRequest(messages=messages, tools=tools, max_output_tokens=321)


def _asdict_digest(request: ModelRequest) -> str:
    shown = {
        "messages": [asdict(m) for m in request.messages],
        "tools": [asdict(t) for t in request.tools],
        "max_output_tokens": request.max_output_tokens,
        "temperature": request.temperature,
        "response_schema": request.response_schema,
    }
    canonical = json.dumps(shown, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def test_the_digest_and_the_bounds_are_what_asdict_made_them() -> None:
    request = _request()
    specs_json = json.dumps([asdict(spec) for spec in request.tools])

    for _ in range(2):  # built, then from what was built
        assert request_digest(request) == _asdict_digest(request)
        bound = input_token_bound(request)
        estimate = estimate_tokens(request)
    assert bound == input_token_bound(ModelRequest(messages=request.messages)) + -(
        -len(specs_json.encode()) // 3
    )
    chars = sum(
        len(m.content) + sum(len(json.dumps(c.arguments)) + len(c.name) for c in m.tool_calls)
        for m in request.messages
    )
    assert estimate == (chars + len(specs_json)) // 4 + 321
    counted: list[str] = []

    class Counter:
        def count(self, text: str) -> int:
            counted.append(text)
            return len(text)

    count_messages(Counter(), request.messages, request.tools)  # type: ignore[arg-type]
    assert counted[-1] == specs_json


def test_a_spec_built_once_is_not_changed_by_what_reads_it() -> None:
    request = _request()
    request_digest(request)
    request.tools[0].as_dict["input_schema"]["properties"].clear()  # a careless reader

    # The spec itself is untouched: the model is still told the whole schema.
    assert request.tools[0].input_schema["properties"] == {
        "expression": {"type": "string", "maxLength": 200}
    }
