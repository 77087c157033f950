"""Tokens come from the provider's usage report; when it sends none, they are counted at
4 characters a token and marked estimated, so nobody takes a guess for a bill."""

from __future__ import annotations

from apps.agents.runtime.transcript import reported_or_estimated_usage
from apps.llm.types import Message, ModelRequest, ModelResponse, Usage

REQUEST = ModelRequest(messages=(Message("user", "x" * 400),), max_output_tokens=256)


def test_reported_usage_is_taken_as_reported() -> None:
    response = ModelResponse(text="It is 42.", usage=Usage(input_tokens=120, output_tokens=4))

    assert reported_or_estimated_usage(REQUEST, response) == Usage(120, 4, estimated=False)


def test_missing_usage_is_estimated_and_says_so() -> None:
    response = ModelResponse(text="y" * 80)  # llama.cpp streaming: no usage at all

    usage = reported_or_estimated_usage(REQUEST, response)

    assert usage == Usage(input_tokens=100, output_tokens=20, estimated=True)
