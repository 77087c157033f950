"""What an approver is shown of a tool call's arguments, and the digest that pins them.

The digest is SHA-256 over canonical JSON (sorted keys, no spaces, UTF-8), so the same
arguments always give the same digest in any process. The summary is for people: values
under secret-looking keys and secret-looking strings are replaced, long strings and lists
are cut, deep structures are elided — it is never the arguments themselves.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

REDACTED = "[redacted]"
MAX_STRING = 200
MAX_ITEMS = 20
MAX_DEPTH = 4

_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[_-]?key|credential|cookie|authorization"
    r"|(^|[_-])auth([_-]|$)|private[_-]?key|signature",
    re.IGNORECASE,
)
# Common credential shapes: OpenAI/Anthropic, Slack, GitHub, AWS access keys, JWTs, bearer
# headers, PEM private keys.
_SECRET_VALUE = re.compile(
    r"^(sk-|sk_live_|xox[abposr]-|xapp-|ghp_|gho_|ghs_|github_pat_|AKIA[0-9A-Z]{12})"
    r"|^eyJ[\w-]+\.[\w-]+\."
    r"|^bearer\s"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----",
    re.IGNORECASE,
)


def arguments_digest(arguments: Any) -> str:
    canonical = json.dumps(
        arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def arguments_summary(arguments: Any) -> Any:
    return _summarise(arguments, depth=0)


def _summarise(value: Any, *, depth: int) -> Any:
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return f"{{… {len(value)} keys}}"
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                out["…"] = f"{len(value) - MAX_ITEMS} more keys"
                break
            name = str(key)[:MAX_STRING]
            out[name] = REDACTED if _SECRET_KEY.search(name) else _summarise(item, depth=depth + 1)
        return out
    if isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            return f"[… {len(value)} items]"
        items = [_summarise(item, depth=depth + 1) for item in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"… {len(value) - MAX_ITEMS} more items")
        return items
    if isinstance(value, str):
        if _SECRET_VALUE.search(value.strip()):
            return REDACTED
        if len(value) > MAX_STRING:
            return value[:MAX_STRING] + f"… ({len(value)} characters)"
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    return _summarise(str(value), depth=depth)


def summary_text(summary: Any, *, limit: int = 1500) -> str:
    """The summary as one line of JSON for a Slack card or a log line, cut at `limit`."""
    text = json.dumps(summary, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "…"
