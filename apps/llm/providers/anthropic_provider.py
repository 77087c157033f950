"""Anthropic's messages API through the official `anthropic` SDK.

Differences from chat completions that matter here: the system prompt is a separate
parameter; tool calls are `tool_use` content blocks and their results `tool_result`
blocks inside a *user* message; consecutive messages of one role are merged so the
conversation alternates. `finish_reason` is normalised to the chat-completions
vocabulary ("stop", "tool_calls", "length") so the loop checks one set of values.
`request.temperature` is not sent: this SDK (2.x) no longer has the parameter.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import anthropic

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

NO_KEY_PLACEHOLDER = "no-key"
_ERROR_BODY_CHARS = 300
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "refusal": "content_filter",
}


def to_anthropic_messages(
    messages: tuple[Message, ...],
) -> tuple[str, list[dict[str, Any]]]:
    """Provider-neutral messages → (system prompt, messages with content blocks)."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            if message.content:
                system.append(message.content)
            continue
        blocks: list[dict[str, Any]] = []
        role = "assistant" if message.role == "assistant" else "user"
        if message.role == "tool":
            blocks.append(
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id or "",
                    "content": message.content,
                }
            )
        else:
            # The API rejects empty text blocks.
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            for call in message.tool_calls:
                blocks.append(
                    {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
                )
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return "\n\n".join(system), out


def to_anthropic_tools(tools: tuple[ToolSpec, ...]) -> list[dict[str, Any]]:
    return [
        {
            "name": tool.name,
            "description": tool.description,
            "input_schema": tool.input_schema or {"type": "object", "properties": {}},
        }
        for tool in tools
    ]


def map_anthropic_error(endpoint: EndpointConfig, exc: Exception) -> ProviderError:
    """SDK exception → the router's error vocabulary."""
    return map_sdk_error(endpoint, exc, anthropic)


class AnthropicProvider:
    """Messages API over the official `anthropic` SDK, SDK retries off."""

    def __init__(self, endpoint: EndpointConfig, *, http_client: Any = None) -> None:
        self.endpoint = endpoint
        # An explicit api_key also stops the SDK from reading credentials from the
        # environment or from profile files on disk.
        self._client = anthropic.Anthropic(
            api_key=endpoint.api_key or NO_KEY_PLACEHOLDER,
            base_url=endpoint.base_url or None,
            max_retries=0,
            timeout=endpoint.timeout_s,
            http_client=http_client or guarded_sdk_client(anthropic, endpoint),
        )

    def close(self) -> None:
        self._client.close()

    def request_params(self, request: ModelRequest) -> dict[str, Any]:
        system, messages = to_anthropic_messages(request.messages)
        params: dict[str, Any] = {
            "model": self.endpoint.model,
            "max_tokens": request.max_output_tokens,
            "messages": messages,
        }
        if system:
            params["system"] = system
        if request.tools:
            params["tools"] = to_anthropic_tools(request.tools)
        if request.response_schema is not None and self.endpoint.supports_json_schema:
            params["output_config"] = {
                "format": {"type": "json_schema", "schema": request.response_schema}
            }
        return params

    def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        params = self.request_params(request)
        timeout = effective_timeout(self.endpoint, request)
        try:
            if on_token is None:
                message = self._client.messages.create(**params, timeout=timeout)
            else:
                message = self._stream(params, timeout, guard_sink(on_token))
            if not isinstance(message, anthropic.types.Message):
                raise ProviderUnavailable(
                    f"endpoint {self.endpoint.name!r}: response is not a message"
                )
            return self._to_response(message)
        except ProviderError:
            raise
        except TokenSinkError as exc:
            raise exc.error from None
        except (anthropic.AnthropicError, ValueError) as exc:
            # SDK and transport errors, or an undecodable body/stream. Anything
            # else is a bug here and must not pass for a sick endpoint.
            raise map_anthropic_error(self.endpoint, exc) from exc

    def _stream(self, params: dict[str, Any], timeout: float, on_token: TokenCallback) -> Any:
        deadline = time.monotonic() + timeout
        with self._client.messages.stream(**params, timeout=timeout) as stream:
            for event in stream:
                if time.monotonic() > deadline:
                    raise ProviderTimeout(
                        f"endpoint {self.endpoint.name!r}: stream exceeded {timeout:g}s"
                    )
                if event.type == "text":
                    on_token(event.text)
            return stream.get_final_message()

    def _to_response(self, message: Any) -> ModelResponse:
        try:
            texts: list[str] = []
            calls: list[ToolCall] = []
            raw_calls: list[dict[str, Any]] = []
            malformed: list[str] = []
            for block in message.content:
                if block.type == "text":
                    texts.append(block.text)
                elif block.type == "tool_use":
                    raw_calls.append({"id": block.id, "name": block.name, "input": block.input})
                    if isinstance(block.input, dict) and block.name:
                        calls.append(ToolCall(id=block.id, name=block.name, arguments=block.input))
                    else:
                        malformed.append(block.name or block.id)
            usage = message.usage
            input_tokens = (
                (usage.input_tokens or 0)
                + (getattr(usage, "cache_creation_input_tokens", None) or 0)
                + (getattr(usage, "cache_read_input_tokens", None) or 0)
            )
            stop_reason = message.stop_reason or ""
            model = message.model or ""
        except (AttributeError, TypeError) as exc:
            raise ProviderUnavailable(
                f"endpoint {self.endpoint.name!r}: malformed message ({exc})"
            ) from exc
        text = "".join(texts)
        raw_text = (
            json.dumps({"content": text, "tool_calls": raw_calls}, ensure_ascii=False)
            if raw_calls
            else text
        )
        response = ModelResponse(
            text=text,
            tool_calls=tuple(calls),
            usage=Usage(input_tokens=input_tokens, output_tokens=usage.output_tokens or 0),
            model=model or self.endpoint.model,
            endpoint=self.endpoint.name,
            finish_reason=_STOP_REASONS.get(stop_reason, stop_reason),
            raw_text=raw_text,
        )
        if malformed:
            raise MalformedOutput(
                f"endpoint {self.endpoint.name!r}: tool call(s) {', '.join(malformed)} have "
                "input that is not a JSON object",
                response=replace(response, text="", tool_calls=()),
            )
        return response
