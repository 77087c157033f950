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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
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
        """The chat-completions request body, as sent (without `stream`)."""
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
        # `client.post` (the SDK's documented way to send a body as is): the parameters are
        # already the wire format, and `chat.completions.create` would walk them through its
        # TypedDict transform first (~2 ms of CPU per call for a few messages and tools).
        completion = self._client.post(
            _CHAT_PATH, body=params, cast_to=ChatCompletion, options={"timeout": timeout}
        )
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
        # The SDK sends the request (auth, headers, status errors mapped to its exceptions),
        # but hands back the raw streamed response: its `Stream` closes the response at
        # `[DONE]` before the body's last bytes, so the connection is never reused and every
        # call pays a new TCP (and TLS) handshake; and it builds a pydantic model per chunk.
        response = self._client.post(
            _CHAT_PATH,
            body={**params, "stream": True},
            cast_to=httpx2.Response,
            options={"timeout": timeout, "headers": {_RAW_RESPONSE: "stream"}},
        )
        reader = _ChunkReader(self.endpoint.name, on_token)
        try:
            for data in _sse_data(response, deadline=deadline, endpoint=self.endpoint.name):
                reader.feed(data)
        except httpx2.TimeoutException as exc:
            raise openai.APITimeoutError(request=response.request) from exc
        except httpx2.TransportError as exc:
            raise openai.APIConnectionError(request=response.request) from exc
        finally:
            response.close()
        return build_response(
            endpoint=self.endpoint,
            text="".join(reader.text),
            pending=[reader.pending[index] for index in sorted(reader.pending)],
            usage=reader.usage,
            model=reader.model,
            finish_reason=reader.finish_reason,
        )


_CHAT_PATH = "/chat/completions"
# The SDK's switch for "send it, give me the response unread" (what its
# `with_streaming_response` sets).
_RAW_RESPONSE = "X-Stainless-Raw-Response"


def _sse_data(response: Any, *, deadline: float, endpoint: str) -> Iterator[str]:
    """The `data` of each server-sent event up to `[DONE]`, then the rest of the body read
    (and dropped) so the connection goes back to the pool. Events are separated by a blank
    line; multi-line data is joined with newlines; comments and other fields are skipped."""
    lines: list[str] = []
    done = False
    for line in response.iter_lines():
        if done:
            continue  # a conforming server ends the body here; reading it frees the connection
        if time.monotonic() > deadline:
            raise ProviderTimeout(f"endpoint {endpoint!r}: stream exceeded the timeout")
        if line:
            if line.startswith("data:"):
                lines.append(line[5:].removeprefix(" "))
            continue
        if not lines:
            continue
        data, lines = "\n".join(lines), []
        if data.startswith("[DONE]"):
            done = True
            continue
        yield data
    if lines and not done:  # a last event without its blank line
        data = "\n".join(lines)
        if not data.startswith("[DONE]"):
            yield data


class _ChunkReader:
    """Folds `chat.completion.chunk` objects (as JSON) into text, tool calls, usage."""

    def __init__(self, endpoint: str, on_token: TokenCallback) -> None:
        self.endpoint, self.on_token = endpoint, on_token
        self.text: list[str] = []
        self.pending: dict[int, _PendingCall] = {}
        self.usage = Usage()
        self.model = ""
        self.finish_reason = ""

    def feed(self, data: str) -> None:
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise ProviderUnavailable(
                f"endpoint {self.endpoint!r}: stream chunk is not JSON ({exc})"
            ) from exc
        if not isinstance(chunk, dict):
            raise ProviderUnavailable(f"endpoint {self.endpoint!r}: malformed stream chunk")
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else None
            raise ProviderUnavailable(
                f"endpoint {self.endpoint!r}: error in stream: "
                f"{str(message or 'no message')[:_ERROR_BODY_CHARS]}"
            )
        try:
            self._fold(chunk)
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            raise ProviderUnavailable(
                f"endpoint {self.endpoint!r}: malformed stream chunk ({exc})"
            ) from exc

    def _fold(self, chunk: dict[str, Any]) -> None:
        self.model = chunk.get("model") or self.model
        if chunk.get("usage") is not None:
            self.usage = _usage_dict(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                if not isinstance(content, str):
                    raise TypeError("delta content is not a string")
                self.text.append(content)
                self.on_token(content)
            for part in delta.get("tool_calls") or []:
                call = self.pending.setdefault(int(part.get("index", 0)), _PendingCall())
                if part.get("id") and not call.id:
                    call.id = str(part["id"])
                function = part.get("function")
                if function is not None:
                    # The name arrives once; arguments arrive in pieces.
                    if function.get("name") and not call.name:
                        call.name = str(function["name"])
                    if function.get("arguments"):
                        call.arguments.append(str(function["arguments"]))
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])


def _usage_dict(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        raise TypeError("usage is not an object")
    return Usage(
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
    )


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    return Usage(
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
    )
