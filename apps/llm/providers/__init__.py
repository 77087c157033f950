"""Model providers, and the factory that builds one from an `EndpointConfig`."""

from __future__ import annotations

from apps.llm.providers.base import (
    EndpointConfig,
    MalformedOutput,
    NotReadyProvider,
    Provider,
    StreamInterrupted,
    cost_of,
)

__all__ = [
    "EndpointConfig",
    "MalformedOutput",
    "Provider",
    "StreamInterrupted",
    "build_provider",
    "cost_of",
]


def build_provider(endpoint: EndpointConfig) -> Provider:
    """The provider for `endpoint.kind`. SDKs are imported only when needed."""
    if endpoint.not_ready:
        return NotReadyProvider(endpoint)
    if endpoint.kind == "openai":
        from apps.llm.providers.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider(endpoint)
    if endpoint.kind == "anthropic":
        from apps.llm.providers.anthropic_provider import AnthropicProvider

        return AnthropicProvider(endpoint)
    if endpoint.kind == "local":
        from apps.llm.providers.local_llama import LocalLlamaProvider

        return LocalLlamaProvider(endpoint)
    if endpoint.kind == "scripted":
        from apps.llm.providers.scripted import ScriptedProvider

        return ScriptedProvider(endpoint)
    raise ValueError(f"unknown provider kind {endpoint.kind!r}")
