"""Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp).

Goes through the official `openai` SDK with its own retries switched off: failover
and retry policy belong to the router, and SDK retries would hide a sick endpoint
from the circuit breaker.

Malformed tool-call arguments (not JSON, or JSON that is not an object) raise
`MalformedOutput`; they are never turned into a `ToolCall`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from apps.llm.providers.base import (
    EndpointConfig,
    MalformedOutput,
    TokenCallback,
    TokenSinkError,
    effective_timeout,
    guard_sink,
    guarded_sdk_client,
    map_sdk_error,
)
from apps.llm.types import (
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

# Local servers (llama.cpp, Ollama, vLLM without --api-key) need no key, but the SDK
# refuses to build a client without one.
NO_KEY_PLACEHOLDER = "no-key"
_SCHEMA_NAME_RE = re.compile(r"[^a-zA-Z0-9_-]")
_ERROR_BODY_CHARS = 300


def to_chat_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Provider-neutral messages → chat-completions `messages`."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": message.tool_call_id or "",
                    "content": message.content,
                }
            )
        elif message.role == "assistant" and message.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    # OpenAI accepts null content next to tool_calls; some
                    # compatible servers reject an empty string there.
                    "content": message.content or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {
                                "name": call.name,
                                "arguments": json.dumps(call.arguments, ensure_ascii=False),
                            },
                        }
                        for call in message.tool_calls
                    ],
                }
            )
        else:
            # `name` is not sent: several compatible servers reject or misuse it.
            out.append({"role": message.role, "content": message.content})
    return out


def to_chat_tools(tools: tuple[ToolSpec, ...]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.input_schema or {"type": "object", "properties": {}},
            },
        }
        for tool in tools
    ]


def json_schema_response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """`response_format` for a JSON Schema, as OpenAI and vLLM spell it.

    Not `strict`: strict mode demands every property be required and
    `additionalProperties: false` everywhere, which arbitrary step schemas don't meet.
    The loop validates the output against the schema anyway.
    """
    title = str(schema.get("title") or "step")
    name = _SCHEMA_NAME_RE.sub("_", title)[:64] or "step"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def parse_arguments(raw: str | None) -> dict[str, Any] | None:
    """Tool-call arguments → dict, or None when they are not a JSON object."""
    if raw is None or not raw.strip():
        # Servers send "" for a tool called without arguments.
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@dataclass
class _PendingCall:
    """A tool call being assembled, from a whole message or from stream deltas."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    @property
    def raw_arguments(self) -> str:
        return "".join(self.arguments)


def build_response(
    *,
    endpoint: EndpointConfig,
    text: str,
    pending: list[_PendingCall],
    usage: Usage,
    model: str,
    finish_reason: str,
) -> ModelResponse:
    """Assemble a response; raise `MalformedOutput` if any tool call is unusable."""
    calls: list[ToolCall] = []
    malformed: list[str] = []
    for index, item in enumerate(pending):
        arguments = parse_arguments(item.raw_arguments)
        if arguments is None or not item.name:
            malformed.append(item.name or f"#{index}")
            continue
        # An id the server left out stays empty: the loop assigns one unique per step.
        calls.append(ToolCall(id=item.id, name=item.name, arguments=arguments))
    raw_text = text
    if pending:
        raw_text = json.dumps(
            {
                "content": text,
                "tool_calls": [
                    {"id": p.id, "name": p.name, "arguments": p.raw_arguments} for p in pending
                ],
            },
            ensure_ascii=False,
        )
    if malformed:
        raise MalformedOutput(
            f"endpoint {endpoint.name!r}: tool call(s) {', '.join(malformed)} have arguments "
            "that are not a JSON object",
            response=ModelResponse(
                usage=usage,
                model=model or endpoint.model,
                endpoint=endpoint.name,
                finish_reason=finish_reason,
                raw_text=raw_text,
            ),
        )
    return ModelResponse(
        text=text,
        tool_calls=tuple(calls),
        usage=usage,
        model=model or endpoint.model,
        endpoint=endpoint.name,
        finish_reason=finish_reason,
        raw_text=raw_text,
    )


def map_openai_error(endpoint: EndpointConfig, exc: Exception) -> ProviderError:
    """SDK exception → the router's error vocabulary."""
    return map_sdk_error(endpoint, exc, openai)


class OpenAICompatProvider:
    """Chat completions over the official `openai` SDK."""

    def __init__(self, endpoint: EndpointConfig, *, http_client: Any = None) -> None:
        self.endpoint = endpoint
        self._client = openai.OpenAI(
            api_key=endpoint.api_key or NO_KEY_PLACEHOLDER,
            base_url=endpoint.base_url or None,
            max_retries=0,
            timeout=endpoint.timeout_s,
            http_client=http_client or guarded_sdk_client(openai, endpoint),
        )

    def close(self) -> None:
        self._client.close()

    def request_params(self, request: ModelRequest) -> dict[str, Any]:
        """Keyword arguments for `chat.completions.create` (without streaming)."""
        options = self.endpoint.options
        params: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": to_chat_messages(request.messages),
            "temperature": request.temperature,
        }
        max_tokens_param = options.get("max_tokens_param") or (
            "max_completion_tokens" if "api.openai.com" in self.endpoint.base_url else "max_tokens"
        )
        params[max_tokens_param] = request.max_output_tokens
        if request.tools:
            params["tools"] = to_chat_tools(request.tools)
        # Only where the endpoint says it understands it: servers that don't tend to
        # reject the whole request. The loop validates the output either way.
        if request.response_schema is not None and self.endpoint.supports_json_schema:
            params["response_format"] = self.response_format(request.response_schema)
        return params

    def response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        return json_schema_response_format(schema)

    def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        params = self.request_params(request)
        timeout = effective_timeout(self.endpoint, request)
        try:
            if on_token is None:
                return self._complete_whole(params, timeout)
            return self._complete_streamed(params, timeout, guard_sink(on_token))
        except ProviderError:
            raise
        except TokenSinkError as exc:
            raise exc.error from None
        except (openai.OpenAIError, ValueError) as exc:
            # SDK and transport errors, or an undecodable body/stream. Anything
            # else is a bug here and must not pass for a sick endpoint.
            raise map_openai_error(self.endpoint, exc) from exc

    def _complete_whole(self, params: dict[str, Any], timeout: float) -> ModelResponse:
        completion = self._client.chat.completions.create(**params, timeout=timeout)
        # With a non-JSON body the SDK returns the text instead of a model object.
        if not isinstance(completion, ChatCompletion):
            raise ProviderUnavailable(
                f"endpoint {self.endpoint.name!r}: response is not a chat completion"
            )
        try:
            choice = completion.choices[0]
            message = choice.message
            pending = [
                _PendingCall(
                    id=call.id,
                    name=getattr(getattr(call, "function", None), "name", "") or "",
                    arguments=[getattr(getattr(call, "function", None), "arguments", None) or ""],
                )
                for call in (message.tool_calls or [])
            ]
            text = message.content or ""
            finish_reason: str = choice.finish_reason or ""
            if not text and not pending and message.refusal:
                text, finish_reason = message.refusal, "refusal"
            usage = _usage(completion.usage)
            model = completion.model or ""
        except (AttributeError, IndexError, TypeError) as exc:
            # A JSON body that isn't shaped like a completion (the SDK builds
            # models without validation, so missing fields surface here).
            raise ProviderUnavailable(
                f"endpoint {self.endpoint.name!r}: malformed chat completion ({exc})"
            ) from exc
        return build_response(
            endpoint=self.endpoint,
            text=text,
            pending=pending,
            usage=usage,
            model=model,
            finish_reason=finish_reason,
        )

    def _complete_streamed(
        self, params: dict[str, Any], timeout: float, on_token: TokenCallback
    ) -> ModelResponse:
        if self.endpoint.options.get("stream_usage", True):
            params["stream_options"] = {"include_usage": True}
        # httpx timeouts bound each read, not the whole call: a server that drips
        # one chunk just inside the read timeout would otherwise never time out.
        deadline = time.monotonic() + timeout
        stream = self._client.chat.completions.create(**params, stream=True, timeout=timeout)
        text: list[str] = []
        pending: dict[int, _PendingCall] = {}
        usage = Usage()
        model = ""
        finish_reason = ""
        try:
            for chunk in stream:
                if time.monotonic() > deadline:
                    raise ProviderTimeout(
                        f"endpoint {self.endpoint.name!r}: stream exceeded {timeout:g}s"
                    )
                try:
                    model = chunk.model or model
                    if chunk.usage is not None:
                        usage = _usage(chunk.usage)
                    deltas = [c for c in chunk.choices or [] if c.index == 0]
                except (AttributeError, TypeError) as exc:
                    raise ProviderUnavailable(
                        f"endpoint {self.endpoint.name!r}: malformed stream chunk ({exc})"
                    ) from exc
                for choice in deltas:
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        on_token(delta.content)
                    for part in delta.tool_calls or []:
                        call = pending.setdefault(part.index, _PendingCall())
                        if part.id and not call.id:
                            call.id = part.id
                        if part.function is not None:
                            # The name arrives once; arguments arrive in pieces.
                            if part.function.name and not call.name:
                                call.name = part.function.name
                            if part.function.arguments:
                                call.arguments.append(part.function.arguments)
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        finally:
            stream.close()
        return build_response(
            endpoint=self.endpoint,
            text="".join(text),
            pending=[pending[index] for index in sorted(pending)],
            usage=usage,
            model=model,
            finish_reason=finish_reason,
        )


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    return Usage(
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
    )
