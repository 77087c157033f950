"""Telemetry fixtures: spans recorded in memory, a local OTLP/HTTP receiver, and the turn
fixtures of tests/agents and tests/approvals."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

from apps.core import telemetry
from tests.agents.conftest import no_dispatch, two_tool_agent
from tests.approvals.conftest import dave, dave_client, park_turn, sent
from tests.telemetry.otlp_receiver import OtlpReceiver

__all__ = ["dave", "dave_client", "no_dispatch", "park_turn", "sent", "two_tool_agent"]

_memory: list[InMemorySpanExporter] = []


class Spans:
    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name == name]

    def of_kind(self, kind: str) -> list[ReadableSpan]:
        return [s for s in self.all() if (s.attributes or {}).get("warden.step.kind") == kind]


@pytest.fixture
def spans() -> Iterator[Spans]:
    """Every span finished during the test, recorded (the process's provider, the one the
    platform set up, with an in-memory exporter added once). Recording stops afterwards."""
    if not _memory:
        exporter = InMemorySpanExporter()
        telemetry.exporter_add(exporter, batch=False)
        _memory.append(exporter)
    exporter = _memory[0]
    exporter.clear()
    telemetry._sampler.inner = ParentBased(ALWAYS_ON)
    yield Spans(exporter)
    telemetry._sampler.inner = ALWAYS_OFF
    exporter.clear()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()
