"""Untrusted JSON, parsed so that no input can turn into a 500.

- Depth: `json.loads` recurses once per nesting level, so 10,000 `[` raise RecursionError
  deep inside the decoder. The depth is measured first, by a linear scan of the raw text
  that never recurses.
- Characters: PostgreSQL refuses NUL in `text` and `jsonb`, and a lone UTF-16 surrogate
  (`"\\ud800"`) cannot be encoded as UTF-8 at all. Both are refused anywhere in a key or
  a string, before anything reaches a column, a log line or an event.
- Numbers: `1e400` decodes to infinity, which `jsonb` cannot hold; NaN and Infinity
  literals are not JSON. Both are refused.

Used by the REST parser (apps.core.api.parsers) and available to any other channel that
reads JSON from a tenant (websocket frames).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from apps.core.exceptions import InvalidInput

# A JSON string (possibly unterminated: the closing quote is optional so that a broken
# string is consumed once instead of re-scanned from every later quote), or a bracket.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class JsonRefused(InvalidInput):
    """A JSON document the platform will not accept; `code` says why."""

    code = "invalid_json"


def json_depth_exceeds(text: str, max_depth: int) -> bool:
    """True when `text` nests arrays/objects deeper than `max_depth` (strings are skipped)."""
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > max_depth:
                return True
        elif token in ("]", "}"):
            depth -= 1
    return False


def has_unstorable_characters(text: str) -> bool:
    """True when `text` holds a NUL or a lone surrogate (PostgreSQL cannot store either)."""
    return _UNSTORABLE.search(text) is not None


def refuse_unstorable(value: Any) -> None:
    """Raise JsonRefused(invalid_characters) if any key or string in `value` is unstorable.

    Iterative, so a deep value cannot exhaust the stack here either.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings: list[str] = [item]
        elif isinstance(item, dict):
            strings = [key for key in item if isinstance(key, str)]
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
            continue
        else:
            continue
        if any(has_unstorable_characters(s) for s in strings):
            raise JsonRefused(
                "Strings may not contain NUL characters or unpaired UTF-16 surrogates.",
                code="invalid_characters",
            )


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"number {raw[:20]} is out of range")
    return value


def json_loads_limited(text: str, *, max_depth: int) -> Any:
    """Decode `text` as strict JSON within `max_depth`, refusing unstorable strings.

    Raises JsonRefused with code `json_too_deep`, `invalid_json` or `invalid_characters`.
    """
    if json_depth_exceeds(text, max_depth):
        raise JsonRefused(f"JSON is nested deeper than {max_depth} levels.", code="json_too_deep")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as exc:  # only if max_depth is set above the interpreter's limit
        raise JsonRefused("JSON is nested too deeply.", code="json_too_deep") from exc
    except ValueError as exc:
        raise JsonRefused(f"JSON parse error - {exc}", code="invalid_json") from exc
    refuse_unstorable(value)
    return value
