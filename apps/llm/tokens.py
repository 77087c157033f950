"""Token counts per model, behind one interface: `counter_for(endpoint)`.

Which counter an endpoint gets, first match wins:

1. `options["tokenizer"]` on the endpoint: `"estimate"`, or a BPE encoding name
   (`o200k_base`, `cl100k_base`, …) — for OpenAI-compatible servers whose model the name
   alone does not reveal.
2. The scripted model: its own count (4 characters a token, rounded up), exact for it.
3. OpenAI models (`gpt-4o*`, `gpt-4.1*`, `gpt-5*`, `o1`/`o3`/`o4*` → o200k_base; `gpt-4*`,
   `gpt-3.5*` → cl100k_base): the provider's own BPE tables, from the `bpe-openai` wheel,
   which bundles them. tiktoken is not used: it downloads its tables at run time, which an
   offline deployment can't.
4. The local model (llama.cpp's server, `kind="local"`): the server's own tokenizer, over its
   `POST /tokenize` — exact for the GGUF it serves. Unreachable or failing: the estimate for
   that text, and the counter says it is no longer exact.
5. Anything else (Anthropic, whose tokenizer is not published; other llama.cpp / vLLM models
   behind the OpenAI protocol, whose tokenizers are not on PyPI offline): the estimate, one
   token per 3 bytes of UTF-8, rounded up. Common BPE tokenizers average about 4 characters a token
   on English text, so the estimate errs high by about a third — a safety margin: a window is
   never thought roomier than it is. It is the same bound the budgets hold for a prompt
   (apps/agents/runtime/transcript.py `input_token_bound`).

A chat's count is OpenAI's recipe (the cookbook's `num_tokens_from_messages`): 3 tokens a
message, plus its role, content and name (and 1 for a name), plus 3 to prime the reply; tool
calls and tool specs are counted as their JSON (the recipe has no exact figure for those).

Framework-free, like the providers: the agents' pure runtime counts with it.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from apps.core.egress import STRICT, EgressPolicy
from apps.core.egress.httpx_guard import guarded_client
from apps.llm.types import Message, ToolSpec, tools_json

logger = logging.getLogger("warden.llm")

ESTIMATE = "estimate"
SCRIPTED = "scripted"
BYTES_PER_TOKEN = 3
PER_MESSAGE = 3
PER_NAME = 1
REPLY_PRIMING = 3

# Model-name prefixes → encoding (as tiktoken maps them), longest prefix first.
_OPENAI_PREFIXES: tuple[tuple[str, str], ...] = (
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("gpt-oss", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)


class TokenCounter(Protocol):
    """Counts the tokens of text as one model sees them. `name` says how (an encoding name,
    `scripted` or `estimate`); `exact` is False for the estimate."""

    @property
    def name(self) -> str: ...

    @property
    def exact(self) -> bool: ...

    def count(self, text: str) -> int: ...


@dataclass(frozen=True)
class EstimateCounter:
    """One token per 3 bytes of UTF-8, rounded up (see the module docstring)."""

    name: str = ESTIMATE
    exact: bool = False

    def count(self, text: str) -> int:
        return -(-len(text.encode()) // BYTES_PER_TOKEN)


@dataclass(frozen=True)
class ScriptedCounter:
    """The scripted model's own count (apps/llm/providers/scripted.py): 4 characters a
    token, rounded up."""

    name: str = SCRIPTED
    exact: bool = True

    def count(self, text: str) -> int:
        return (len(text) + 3) // 4


class BpeCounter:
    """An OpenAI BPE encoding, loaded once per process from the `bpe-openai` wheel. Special
    tokens in the text are counted as the plain text they are (a user can type them)."""

    exact = True

    def __init__(self, name: str) -> None:
        self.name = name
        self._encoding = _encoding(name)

    def count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))


@functools.cache
def _encoding(name: str) -> Any:
    # Imported here, not at the top: the tables load only in a process that counts with them.
    import bpe_openai

    return bpe_openai.get_encoding(name)


class LlamaServerCounter:
    """llama.cpp's server tokenizes with the model it serves: `POST <root>/tokenize
    {"content": …}` → `{"tokens": […]}`. Counts are cached per text (roles and repeated
    history cost one request each per process); connections go through the endpoint's egress
    policy, like its completions. A failure counts that text with the estimate, logs once per
    counter, and `exact` turns False."""

    name = "llama.cpp"
    CACHE = 4096
    TIMEOUT_S = 2.0

    def __init__(self, base_url: str, *, egress: EgressPolicy = STRICT) -> None:
        root = base_url.rstrip("/")
        self.url = (root[: -len("/v1")] if root.endswith("/v1") else root) + "/tokenize"
        self.exact = True
        self._egress = egress
        self._cache: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        with self._lock:
            if text in self._cache:
                self._cache.move_to_end(text)
                return self._cache[text]
        try:
            with guarded_client(self._egress, timeout=self.TIMEOUT_S) as client:
                reply = client.post(self.url, json={"content": text, "add_special": False})
            reply.raise_for_status()
            tokens = reply.json()["tokens"]
            if not isinstance(tokens, list):
                raise ValueError("tokens is not a list")
            found = len(tokens)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            if self.exact:
                logger.warning(
                    "llama.cpp tokenizer unavailable; estimating",
                    extra={"url": self.url, "error": type(exc).__name__},
                )
            self.exact = False
            return EstimateCounter().count(text)
        with self._lock:
            self._cache[text] = found
            while len(self._cache) > self.CACHE:
                self._cache.popitem(last=False)
        return found


def openai_encoding(model: str) -> str | None:
    """The BPE encoding of an OpenAI model name, or None if it isn't one we know."""
    lowered = model.lower().rsplit("/", 1)[-1]  # "openai/gpt-4o" as some gateways name it
    for prefix, encoding in _OPENAI_PREFIXES:
        if lowered.startswith(prefix):
            return encoding
    return None


def counter_named(name: str) -> TokenCounter:
    """A counter by name: an encoding name, `scripted` or `estimate`. Unknown names get the
    estimate (a typo in an endpoint's options must not break its turns)."""
    if name == SCRIPTED:
        return ScriptedCounter()
    if name and name != ESTIMATE:
        try:
            return BpeCounter(name)
        except (ImportError, KeyError, ValueError):
            pass
    return EstimateCounter()


def counter_for_model(
    *, kind: str, model: str, options: Mapping[str, Any] | None = None
) -> TokenCounter:
    """The counter for a model endpoint's provider kind, model name and options (rules in
    the module docstring)."""
    chosen = (options or {}).get("tokenizer")
    if isinstance(chosen, str) and chosen:
        return counter_named(chosen)
    if kind == "scripted":
        return ScriptedCounter()
    if kind == "openai":
        encoding = openai_encoding(model)
        if encoding is not None:
            return counter_named(encoding)
    return EstimateCounter()


def counter_for(endpoint: Any) -> TokenCounter:
    """The counter for an `EndpointConfig`; the estimate for None."""
    if endpoint is None:
        return EstimateCounter()
    chosen = endpoint.options.get("tokenizer")
    if endpoint.kind == "local" and endpoint.base_url and not chosen:
        return LlamaServerCounter(endpoint.base_url, egress=endpoint.egress)
    return counter_for_model(kind=endpoint.kind, model=endpoint.model, options=endpoint.options)


def count_message(counter: TokenCounter, message: Message) -> int:
    """One message's tokens, framing included."""
    total = PER_MESSAGE + counter.count(message.role) + counter.count(message.content)
    if message.name:
        total += PER_NAME + counter.count(message.name)
    for call in message.tool_calls:
        total += counter.count(call.name) + counter.count(json.dumps(call.arguments))
    return total


def count_messages(
    counter: TokenCounter, messages: Iterable[Message], tools: Iterable[ToolSpec] = ()
) -> int:
    """A chat request's prompt tokens: its messages, framing, and tool specs as JSON."""
    total = REPLY_PRIMING + sum(count_message(counter, m) for m in messages)
    specs = list(tools)
    if specs:
        total += counter.count(tools_json(specs))
    return total
