"""Context compression: the context window is a budget, so old history is summarised.

Before a turn's first model call its prompt is measured twice: with the model's own token
counter against the model's context window (less the output allowance), and as the budget
holds it (`input_token_bound`) against the turn's input budget. When either reaches
`trigger` (80 %), every earlier turn but the last `keep_recent` — and the summary they
already had, if any — is summarised in one call to the small tier. The summary is kept (a
`SummaryStore`), stands in for those turns in this prompt and every later one, and is never
computed again: a later turn folds it, with the turns since, into the next summary only
when its own prompt nears the limits again. `memory.summarized` says which turns it covers
and how many tokens it saved.

The summary call is a model call like any other: held and settled in the budgets, recorded
as a node of the action graph (`<turn>:summary`), announced with `model.called`. When it
fails (the provider, an empty answer, a budget that refuses it) the turn still runs: the
turns it should have covered are left out of the prompt instead (the system message says
so), and `memory.summary_failed` says why. A resumed turn neither summarises again nor
retries a failed summary: its node says what happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from apps.llm.tokens import TokenCounter, count_message, count_messages
from apps.llm.types import Message, ModelRequest, ProviderError, ToolSpec, Usage

from .ports import (
    BudgetExceeded,
    BudgetPort,
    Clock,
    ContextSummary,
    Exchange,
    ModelPort,
    StepContext,
    StepRecord,
    SummaryStore,
)
from .transcript import input_token_bound, reported_or_estimated_usage

SUMMARY_PURPOSE = "summary"  # ModelRequest.metadata["purpose"]: the model port asks the small tier
SUMMARY_HEADING = "Summary of the earlier conversation (turns {first}-{last}):"
OMITTED_TURNS = (
    "[Turns {first}-{last} of this conversation were left out: they could not be summarised.]"
)
SUMMARISE_INSTRUCTIONS = (
    "You summarise a conversation between a user and an assistant so that the assistant can "
    "continue it without the full transcript. Keep every fact, decision, number, name and "
    "open question; drop greetings and repetition. Write plain prose, at most {words} words. "
    "Reply with the summary only."
)


@dataclass(frozen=True)
class ContextMemory:
    """What a turn knows of its session's earlier turns, and how to keep it within limits.

    `exchanges`: the earlier turns `summary` does not cover, oldest first. `counter`: the
    token counter of the model the turn will most likely use, `context_window` its window.
    `input_budget`: the turn's input tokens (as the budget holds them)."""

    exchanges: tuple[Exchange, ...]
    summary: ContextSummary | None
    store: SummaryStore
    counter: TokenCounter
    context_window: int
    input_budget: int
    trigger: float = 0.8
    keep_recent: int = 2
    summary_max_tokens: int = 400


@dataclass(frozen=True)
class Pressure:
    """How full the prompt is: tokens and limits for the window and the turn's budget."""

    window_tokens: int
    window_limit: int
    budget_tokens: int
    budget_limit: int

    @property
    def fraction(self) -> float:
        return max(
            self.window_tokens / max(1, self.window_limit),
            self.budget_tokens / max(1, self.budget_limit),
        )


def system_with_summary(system_prompt: str, summary: ContextSummary | None) -> str:
    """The system message with the summary appended: one system message for every provider
    (some take only one)."""
    if summary is None:
        return system_prompt
    block = summary_block(summary)
    return f"{system_prompt}\n\n{block}".strip()


def summary_block(summary: ContextSummary) -> str:
    heading = SUMMARY_HEADING.format(first=summary.from_seq, last=summary.through_seq)
    return f"{heading}\n{summary.text}"


def history_messages(exchanges: Sequence[Exchange]) -> list[Message]:
    messages: list[Message] = []
    for exchange in exchanges:
        messages.append(Message(role="user", content=exchange.user))
        messages.append(Message(role="assistant", content=exchange.answer))
    return messages


def pressure(
    memory: ContextMemory,
    messages: Sequence[Message],
    tools: Sequence[ToolSpec],
    *,
    max_output_tokens: int,
) -> Pressure:
    return Pressure(
        window_tokens=count_messages(memory.counter, messages, tools),
        window_limit=memory.context_window - max_output_tokens,
        budget_tokens=input_token_bound(ModelRequest(messages=tuple(messages), tools=tuple(tools))),
        budget_limit=memory.input_budget,
    )


def transcript_text(summary: ContextSummary | None, exchanges: Sequence[Exchange]) -> str:
    """What the summariser reads: the summary so far, then the turns to fold into it."""
    parts = [summary_block(summary)] if summary is not None else []
    for exchange in exchanges:
        parts.append(f"Turn {exchange.seq}\nUser: {exchange.user}\nAssistant: {exchange.answer}")
    return "\n\n".join(parts)


class ContextCompressor:
    """Runs the check and, when it trips, the summary call (see the module docstring)."""

    def __init__(
        self,
        memory: ContextMemory,
        *,
        turn_id: str,
        model: ModelPort,
        budget: BudgetPort,
        emit: Callable[[str, dict[str, Any]], None],
        save: Callable[[StepRecord], None],
        clock: Clock,
        attributes: Any,
    ) -> None:
        self.memory, self.turn_id = memory, turn_id
        self.model, self.budget, self.emit, self.save = model, budget, emit, save
        self.clock, self.attributes = clock, attributes
        self.node_id = f"{turn_id}:summary"

    def fit(
        self,
        *,
        build: Callable[[ContextSummary | None, Sequence[Exchange], str], list[Message]],
        tools: Sequence[ToolSpec],
        max_output_tokens: int,
        done: StepRecord | None,
    ) -> list[Message]:
        """The turn's opening messages: as they are, or with the oldest turns summarised.
        `build(summary, exchanges, note)` makes the messages; `done` is this turn's summary
        node from an earlier run, if any."""
        memory = self.memory
        summary, exchanges = memory.summary, memory.exchanges
        fold = list(exchanges[: max(0, len(exchanges) - memory.keep_recent)])
        if done is not None:
            if done.status == "completed" or not fold:
                return build(summary, exchanges, "")  # the store had it: already in `summary`
            return build(summary, exchanges[len(fold) :], self._omitted(fold))
        messages = build(summary, exchanges, "")
        if not fold:  # nothing old enough to summarise: not worth counting
            return messages
        before = pressure(memory, messages, tools, max_output_tokens=max_output_tokens)
        if before.fraction < memory.trigger:
            return messages
        made = self._summarise(summary, fold, before)
        if made is None:
            return build(summary, exchanges[len(fold) :], self._omitted(fold))
        return build(made, exchanges[len(fold) :], "")

    @staticmethod
    def _omitted(fold: Sequence[Exchange]) -> str:
        return OMITTED_TURNS.format(first=fold[0].seq, last=fold[-1].seq)

    def _summarise(
        self, previous: ContextSummary | None, fold: list[Exchange], before: Pressure
    ) -> ContextSummary | None:
        memory, counter = self.memory, self.memory.counter
        first = previous.from_seq if previous is not None else fold[0].seq
        last = fold[-1].seq
        covers = {"from_seq": first, "through_seq": last, "turns": last - first + 1}
        words = max(20, memory.summary_max_tokens * 3 // 4)
        request = ModelRequest(
            messages=(
                Message(role="system", content=SUMMARISE_INSTRUCTIONS.format(words=words)),
                Message(role="user", content=transcript_text(previous, fold)),
            ),
            max_output_tokens=memory.summary_max_tokens,
            temperature=0.0,
            metadata={"turn_id": self.turn_id, "node_id": self.node_id, "purpose": SUMMARY_PURPOSE},
        )
        ctx = StepContext(
            turn_id=self.turn_id,
            step_index=0,
            call_index=None,
            idempotency_key=self.node_id,
            attributes=self.attributes,
        )
        record = StepRecord(
            node_id=self.node_id,
            turn_id=self.turn_id,
            kind="model_call",
            status="failed",
            step_index=0,
            inputs={"purpose": SUMMARY_PURPOSE, **covers},
            created_at=self.clock.now(),
        )
        try:
            reservation = self.budget.reserve(
                estimated_tokens=input_token_bound(request) + request.max_output_tokens,
                ctx=ctx,
                request=request,
            )
        except BudgetExceeded as exc:
            self._failed(record, covers, reason=exc.code, detail=str(exc))
            return None
        started = self.clock.monotonic()
        usage, answered_by, text, failure = Usage(), "", "", ""
        response = None
        try:
            response = self.model.complete(request)
            usage = reported_or_estimated_usage(request, response)
            answered_by, text = response.endpoint, response.text.strip()
        except ProviderError as exc:
            failure = str(exc) or type(exc).__name__
        finally:
            settlement = self.budget.settle(reservation, usage=usage, endpoint=answered_by)
        cost = settlement.cost if settlement is not None else ""
        latency_ms = round((self.clock.monotonic() - started) * 1000)
        record = replace(
            record,
            latency_ms=latency_ms,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            inputs={**record.inputs, "reserved_tokens": reservation.tokens},
        )
        if response is not None:
            self.emit(
                "model.called",
                {
                    "node_id": self.node_id,
                    "step_index": 0,
                    "attempt": 0,
                    "purpose": SUMMARY_PURPOSE,
                    "endpoint": response.endpoint,
                    "model": response.model,
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                    "cost": cost,
                    "usage_estimated": usage.estimated,
                    "latency_ms": latency_ms,
                },
            )
        if failure or not text:
            record = replace(record, outputs={"cost": cost, "endpoint": answered_by})
            self._failed(
                record,
                covers,
                reason="provider_error" if failure else "empty_summary",
                detail=failure or "the model returned an empty summary",
            )
            return None
        tokens_before = sum(count_message(counter, m) for m in history_messages(fold)) + (
            counter.count(summary_block(previous)) if previous is not None else 0
        )
        made = ContextSummary(
            from_seq=first,
            through_seq=last,
            text=text,
            tokens_before=tokens_before,
            tokens_after=0,
            made_by=self.turn_id,
            counter=counter.name,
            turn_ids=(*(previous.turn_ids if previous else ()), *(e.turn_id for e in fold)),
        )
        made = replace(made, tokens_after=counter.count(summary_block(made)))
        memory.store.save(made)
        self.save(
            replace(
                record,
                status="completed",
                outputs={
                    "summary": text,
                    "tool_calls": [],
                    "final_answer": None,
                    "rationale": "",
                    "endpoint": answered_by,
                    "model": response.model if response is not None else "",
                    "cost": cost,
                    "usage_estimated": usage.estimated,
                    **covers,
                },
            )
        )
        self.emit(
            "memory.summarized",
            {
                "node_id": self.node_id,
                **covers,
                "turn_ids": list(made.turn_ids),
                "tokens_before": made.tokens_before,
                "tokens_after": made.tokens_after,
                "tokens_saved": made.tokens_before - made.tokens_after,
                "prompt_fraction": round(before.fraction, 4),
                "counter": counter.name,
                "exact": counter.exact,
                "endpoint": answered_by,
            },
        )
        return made

    def _failed(
        self, record: StepRecord, covers: dict[str, int], *, reason: str, detail: str
    ) -> None:
        self.save(replace(record, status="failed", outputs={**record.outputs, "error": detail}))
        self.emit(
            "memory.summary_failed",
            {
                "node_id": self.node_id,
                **covers,
                "reason": reason,
                "detail": detail,
                "fallback": "omitted_oldest_turns",
            },
        )
