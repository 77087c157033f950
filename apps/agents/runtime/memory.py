"""In-memory implementations of the ports, for tests, replays and benchmarks."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apps.llm.types import ModelRequest, ModelResponse, ProviderError, ToolCall, ToolSpec, Usage

from .ports import (
    BudgetExceeded,
    ContextSummary,
    Reservation,
    StepContext,
    StepRecord,
    ToolResult,
)


class InMemoryCheckpointStore:
    """Keeps records per turn; `log` lists every write as (operation, node_id, status)."""

    def __init__(self) -> None:
        self._turns: dict[str, dict[str, StepRecord]] = {}
        self.log: list[tuple[str, str, str]] = []

    def load(self, turn_id: str) -> list[StepRecord]:
        return list(self._turns.get(turn_id, {}).values())

    def _put(self, operation: str, record: StepRecord) -> None:
        # dict assignment keeps the first-insertion position: "in the order first saved".
        self._turns.setdefault(record.turn_id, {})[record.node_id] = record
        self.log.append((operation, record.node_id, record.status))

    def save(self, record: StepRecord, *, with_next_write: bool = False) -> None:
        self._put("save", record)  # every write here is durable at once

    def mark_started(self, record: StepRecord) -> None:
        self._put("started", record)

    def mark_finished(self, record: StepRecord) -> None:
        self._put("finished", record)


class ListEventSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        self.events.append((event_type, payload))

    def types(self) -> list[str]:
        return [event_type for event_type, _ in self.events]

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [payload for t, payload in self.events if t == event_type]


class FakeClock:
    """Time that moves only when told to (`advance`), so latencies are exact."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2025, 1, 1, tzinfo=UTC)
        self._mono = 0.0

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._now += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._now


class ScriptedModel:
    """Returns queued responses in order (or raises queued exceptions) and keeps
    every request it received in `requests`. Running out is a provider error,
    so a loop that calls the model more often than scripted fails visibly."""

    def __init__(self, script: Iterable[ModelResponse | Exception]) -> None:
        self._script = list(script)
        self.requests: list[ModelRequest] = []

    def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        if not self._script:
            raise ProviderError("scripted model has no more responses")
        item = self._script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


@dataclass
class _Tool:
    spec: ToolSpec
    fn: Callable[..., Any]
    idempotent: bool


@dataclass
class DictTools:
    """Tools backed by python callables, called with the arguments as keywords.

    An `Exception` from a callable becomes an error result, like a real executor
    would report it; anything else (e.g. a BaseException simulating SIGKILL)
    propagates. `calls` lists (name, arguments, idempotency key) per execution.
    """

    _tools: dict[str, _Tool] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)

    def add(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        input_schema: dict[str, Any] | None = None,
        description: str = "",
        idempotent: bool = False,
    ) -> DictTools:
        spec = ToolSpec(name=name, description=description, input_schema=input_schema or {})
        self._tools[name] = _Tool(spec=spec, fn=fn, idempotent=idempotent)
        return self

    def list_specs(self) -> Sequence[ToolSpec]:
        return [tool.spec for tool in self._tools.values()]

    def is_idempotent(self, name: str) -> bool:
        return self._tools[name].idempotent

    def execute(self, call: ToolCall, *, ctx: StepContext) -> ToolResult:
        self.calls.append((call.name, dict(call.arguments), ctx.idempotency_key))
        try:
            return ToolResult(ok=True, output=self._tools[call.name].fn(**call.arguments))
        except Exception as exc:
            return ToolResult(ok=False, error=f"{type(exc).__name__}: {exc}")

    def count(self, name: str) -> int:
        return sum(1 for called, _, _ in self.calls if called == name)


class FixedBudget:
    """A hard token limit: refuses a reservation that could take spend past it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0
        self.reserved: dict[str, int] = {}
        self.settled: list[tuple[Reservation, Usage]] = []
        self._ids = itertools.count()

    def reserve(
        self, *, estimated_tokens: int, ctx: StepContext, request: ModelRequest | None = None
    ) -> Reservation:
        held = self.spent + sum(self.reserved.values())
        if held + estimated_tokens > self.limit:
            raise BudgetExceeded(
                f"needs up to {estimated_tokens} tokens, {self.limit - held} left of {self.limit}"
            )
        reservation = Reservation(id=f"r{next(self._ids)}", tokens=estimated_tokens)
        self.reserved[reservation.id] = estimated_tokens
        return reservation

    def settle(self, reservation: Reservation, *, usage: Usage, endpoint: str = "") -> None:
        del self.reserved[reservation.id]
        self.spent += usage.input_tokens + usage.output_tokens
        self.settled.append((reservation, usage))


class ListSummaryStore:
    """Keeps summaries in a list, newest last."""

    def __init__(self) -> None:
        self.summaries: list[ContextSummary] = []

    def save(self, summary: ContextSummary) -> None:
        self.summaries.append(summary)

    def latest(self) -> ContextSummary | None:
        return self.summaries[-1] if self.summaries else None
