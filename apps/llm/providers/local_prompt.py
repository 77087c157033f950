"""How the embedded local model is shown a ReAct turn: prompt and grammar shaped for a
model of a few hundred million parameters. Used by `LocalLlamaProvider` only; every other
provider sends the loop's messages and step schema as they are.

What a 135M model gets wrong with the loop's generic JSON-step transcript (measured with
benchmarks/eval_local_agent.py on SmolLM2-135M):
- its own earlier steps, echoed back as JSON, are what it copies next: after the tool has
  answered it emits the same call again, turn after turn, until max_steps;
- a result given as `Observation from calculator: {"expression": ..., "value": 391}` is not
  read as an answer to pass on;
- every character of free-form `thought` is a chance to drift (it copies the instructions'
  "<your reasoning>" placeholder, or starts arguing with itself), and an argument string
  with no shape is where it writes a whole paragraph instead of an expression.

So, for this provider only, the history is told in plain words (an earlier action as
"I called the calculator tool with expression 17 * 23.", a result as "The calculator tool
returned expression 17 * 23, value 391. Answer the user now with final_answer."), the
step's `thought` can be capped (0 characters by default: the step is then only the action
or the answer), the final answer is one bounded line, llama.cpp's repeat penalty is off (it
kept the model from copying the digits of the result), and an operator may narrow a tool
argument to a pattern for this endpoint. The grammar only ever gets narrower: what the model
emits still validates against the loop's step schema, and the loop validates it against
the tool's own schema as before.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from apps.llm.types import Message, read_observation

# The properties of the loop's ReAct step schema this module narrows.
THOUGHT = "thought"
FINAL_ANSWER = "final_answer"
# After a tool's result. Naming the field mattered: with "Answer the user now." alone SmolLM2
# called the calculator again in 3 of 8 probes, with it in none (benchmarks/eval_local_agent.py).
ANSWER_NOW = "Answer the user now with final_answer."
# A one-line JSON string: any character but a control character, `"`, `\` or a brace, or an
# escape. llama.cpp's grammar compiler matches a pattern against the JSON text of the string,
# escapes included, so this keeps a raw newline out while `\n` and `\"` stay possible.
# Braces are out because a small model "closes" its step inside the answer: SmolLM2 writes
# `"final_answer": "42 }` and runs on, where the quote was all that was missing.
ONE_LINE_CHAR = r'([^\x00-\x1f"\\{}]|\\(["\\/bfnrt]|u[0-9a-fA-F]{4}))'


def plain_history(messages: tuple[Message, ...]) -> tuple[Message, ...]:
    """The transcript with the loop's JSON steps and observations retold in plain words.

    The system prompt (which says what a reply must look like) and what the user wrote stay
    as they are; so does anything that isn't a JSON step (a re-prompt, a malformed reply
    echoed back for correction).
    """
    return tuple(_plain(message) for message in messages)


def _plain(message: Message) -> Message:
    if message.role == "assistant" and not message.tool_calls:
        told = _told_step(message.content)
        return message if told is None else Message(role="assistant", content=told)
    observation = read_observation(message)
    if observation is not None:
        tool, text = observation
        return Message(
            role="user",
            content=f"The {tool} tool returned {_words(text)}. {ANSWER_NOW}",
            name=message.name,
        )
    return message


def _told_step(text: str) -> str | None:
    try:
        step = json.loads(text)
    except ValueError:
        return None
    if not isinstance(step, dict):
        return None
    action = step.get("action")
    if isinstance(action, dict) and isinstance(action.get("tool"), str):
        arguments = action.get("arguments")
        if isinstance(arguments, dict) and arguments:
            return f"I called the {action['tool']} tool with {_fields(arguments)}."
        return f"I called the {action['tool']} tool."
    answer = step.get("final_answer")
    if isinstance(answer, str):
        return answer
    return None


def _words(text: str) -> str:
    """A tool's output in words: a JSON object as "key value, key value", anything else as is."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict) and value:
        return _fields(value)
    return text


def _fields(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {_scalar(value)}" for key, value in values.items())


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def shape_step_schema(
    schema: dict[str, Any],
    *,
    thought_max_chars: int | None,
    argument_patterns: Mapping[str, Mapping[str, str]],
    answer_max_chars: int | None = None,
    argument_max_chars: int | None = None,
) -> dict[str, Any]:
    """The step schema narrowed for a small model (a copy; `schema` is left alone).

    `thought_max_chars` caps the `thought` of every step (None: no cap).
    `answer_max_chars` makes the final answer one line of at most that many characters (None:
    left as it is). A small model that has said "42" may run on ("42.000000…") until it
    runs out of tokens and its step is cut off unparseable; the bound closes the step.
    `argument_max_chars` bounds every string argument that has neither a length bound nor a
    pattern of its own: a small model may "close" its step inside an argument too
    ("17 * 23 } } }") and run on until its step is cut off.
    `argument_patterns` maps a tool to {argument: regex}: that string argument must match it
    (anchored with ^…$, as llama.cpp's grammar compiler requires), e.g.
    {"calculator": {"expression": "^[0-9(][0-9 +*/().-]*$"}}.
    A schema not shaped like the loop's step schema comes back unchanged.
    """
    shaped = copy.deepcopy(schema)
    branches = shaped.get("oneOf", [shaped])
    for branch in branches if isinstance(branches, list) else []:
        properties = branch.get("properties") if isinstance(branch, dict) else None
        if not isinstance(properties, dict):
            continue
        if thought_max_chars is not None and isinstance(properties.get(THOUGHT), dict):
            properties[THOUGHT] = {**properties[THOUGHT], "maxLength": thought_max_chars}
        if answer_max_chars is not None and isinstance(properties.get(FINAL_ANSWER), dict):
            pattern = f"^{ONE_LINE_CHAR}{{1,{answer_max_chars}}}$"
            properties[FINAL_ANSWER] = {**properties[FINAL_ANSWER], "pattern": pattern}
        _narrow_arguments(properties.get("action"), argument_patterns, argument_max_chars)
    return shaped


def _narrow_arguments(
    action: Any, argument_patterns: Mapping[str, Mapping[str, str]], max_chars: int | None
) -> None:
    try:
        tool = action["properties"]["tool"]["const"]
        arguments = action["properties"]["arguments"]["properties"]
    except (KeyError, TypeError):
        return
    if max_chars is not None:
        for name, argument in arguments.items():
            if (
                isinstance(argument, dict)
                and argument.get("type") == "string"
                and not {"maxLength", "pattern", "enum", "const", "format"} & argument.keys()
            ):
                arguments[name] = {**argument, "maxLength": max_chars}
    for name, pattern in (argument_patterns.get(tool) or {}).items():
        argument = arguments.get(name)
        if isinstance(argument, dict) and argument.get("type") == "string":
            arguments[name] = {**argument, "pattern": pattern}
