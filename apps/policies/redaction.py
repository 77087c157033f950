"""What of a decision's input is kept on the action graph: everything but argument values.

Tool arguments may carry anything the model wrote — secrets and personal data included — and
the decision node is read by more people than the tool call itself. So the recorded input keeps
each argument's name and type and a digest of the whole (two decisions on the same arguments
show the same digest), never a value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"


def arguments_digest(arguments: Any) -> str:
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _shape(value: Any, depth: int = 0) -> Any:
    if isinstance(value, Mapping) and depth < 4:
        return {str(k): _shape(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return f"{REDACTED} list of {len(value)}"
    if isinstance(value, str):
        return f"{REDACTED} string of {len(value)} characters"
    if value is None or isinstance(value, bool):
        return value
    return f"{REDACTED} {type(value).__name__}"


def redact_input(input_doc: Mapping[str, Any]) -> dict[str, Any]:
    """The input document as recorded: argument values replaced by their shape and digest."""
    redacted = dict(input_doc)
    arguments = input_doc.get("arguments")
    redacted["arguments"] = _shape(arguments) if isinstance(arguments, Mapping) else REDACTED
    redacted["arguments_digest"] = arguments_digest(arguments)
    return redacted
