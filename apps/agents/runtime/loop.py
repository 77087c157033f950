"""The governed ReAct loop: think → act → observe, until a final answer or max steps.

Side by side with the design document's bare loop, in substance:

    def react_loop(task, tools, max_steps):
        history = [system_prompt, task]
        for step in range(max_steps):
            response = llm(history)                    # → _Turn.think
            if response.is_final:
                return response.answer
            result = execute(response.tool, response.args)   # → _Turn.act
            history.append(observation(result))
        return "max steps exceeded"

`_Turn.run` below is that loop. What the governance adds lives in the helpers:
a budget reservation around every model call, schema validation with bounded
re-prompts, a policy gate (deny / park for approval) before every tool call, an
action-graph record for every model call, tool call and observation, and a
checkpoint after each of them.

Crash-safe resume is memoisation over those checkpoints: the loop always runs
the same code from the start, and every model call or tool call whose record is
already in the CheckpointStore is replayed from it instead of being performed
again. Because the records are keyed by deterministic ids (turn, step, call),
a rerun rebuilds exactly the same message history and continues where the dead
worker stopped. Replayed work emits no events; it was reported when it happened.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from apps.core import telemetry
from apps.core.telemetry import StepSpan, metric_add, step_span, turn_span
from apps.llm.types import (
    FEEDBACK_NAME,
    EndpointNotReady,
    MalformedOutput,
    Message,
    ModelRequest,
    ProviderError,
    ToolCall,
    Usage,
    observation_message,
)

from .compression import ContextCompressor, ContextMemory, history_messages, system_with_summary
from .memory import InMemoryCheckpointStore
from .obligations import COMPRESS_CONTEXT, apply_obligations
from .ports import (
    TOOL_FINISHED,
    AllowAll,
    ApprovalDecision,
    BudgetExceeded,
    BudgetPort,
    CheckpointStore,
    Clock,
    EventSink,
    GateDecision,
    ModelPort,
    NullEventSink,
    PolicyGate,
    StepContext,
    StepRecord,
    SystemClock,
    ToolPort,
    ToolResult,
    Unlimited,
)
from .steps import MalformedStep, Step, StepParser, build_step_schema
from .transcript import (
    assistant_message,
    build_messages,
    estimate_tokens,
    jsonable,
    malformed_reply,
    reported_or_estimated_usage,
    request_digest,
    step_from_record,
)

__all__ = [
    "LoopConfig",
    "PendingApproval",
    "TurnOutcome",
    "estimate_tokens",
    "jsonable",
    "observation_text",
    "run_turn",
]

TurnStatus = Literal[
    "completed", "failed", "waiting_approval", "max_steps_exceeded", "budget_exceeded"
]

REPROMPT = (
    "Your previous reply was rejected and nothing was executed: {error}. "
    "Reply again with one valid step."
)


@dataclass(frozen=True)
class LoopConfig:
    max_steps: int = 10
    # Re-prompts per step after malformed output; each one halves the output
    # allowance (down to min_output_tokens): a model that rambles into invalid
    # JSON is more likely to produce a short valid step, and it costs less.
    max_reprompts: int = 2
    max_output_tokens: int = 1024
    min_output_tokens: int = 128
    # For models without native tool calling: ask for JSON ReAct steps instead.
    json_steps: bool = False
    temperature: float = 0.0
    timeout_s: float = 60.0
    # The context window is a budget: the model sees at most this much of a tool
    # result; the record keeps all of it.
    max_observation_chars: int = 8000
    # Under a budget's obligations (80 % of a cap): how many not-yet-used tools `trim_tools`
    # keeps, how much of a tool result the model sees under `compress_context`, and how
    # many earlier exchanges of the conversation it keeps.
    trim_tools_to: int = 5
    compressed_observation_chars: int = 1000
    compressed_history_exchanges: int = 2


@dataclass(frozen=True)
class PendingApproval:
    """The call a waiting turn is parked on. Resume with an ApprovalDecision for `call_key`."""

    call: ToolCall
    call_key: str
    reason: str


@dataclass(frozen=True)
class TurnOutcome:
    status: TurnStatus
    final_answer: str | None = None
    reason: str = ""  # a stable code: malformed_output, provider_error, endpoint_not_ready, ...
    detail: str = ""  # the human-readable explanation
    pending: PendingApproval | None = None
    steps: tuple[StepRecord, ...] = ()  # the whole action graph, replayed nodes included
    usage: Usage = field(default_factory=Usage)


def started_payload(*, replayed: int) -> dict[str, Any]:
    """What `turn.started` says (besides the turn's id): whether this run resumes the turn,
    and how many of its recorded steps it replays."""
    return {"resumed": replayed > 0, "replayed_nodes": replayed}


def run_turn(
    *,
    turn_id: str,
    user_message: str,
    model: ModelPort,
    tools: ToolPort,
    system_prompt: str = "",
    history: Sequence[Message] = (),
    policy: PolicyGate | None = None,
    budget: BudgetPort | None = None,
    events: EventSink | None = None,
    clock: Clock | None = None,
    checkpoints: CheckpointStore | None = None,
    approval: ApprovalDecision | None = None,
    config: LoopConfig | None = None,
    attributes: Mapping[str, Any] | None = None,
    memory: ContextMemory | None = None,
) -> TurnOutcome:
    """Run (or resume) one turn to an outcome.

    To resume — after a crash, or with an approval decision — call again with
    the same turn_id, user_message, history, system_prompt and checkpoints.
    `memory` (instead of `history`): the session's earlier turns and their summary, kept
    within the model's window by summarising (compression.py).
    """
    attributes = attributes or {}
    # One span for this run of the turn, the parent of a span per step (prompt build, model
    # call, policy check, approval wait, tool call). Ids, names and figures only: no prompt,
    # argument or result ever goes on a span.
    span_attributes = {
        "warden.tenant.id": attributes.get("tenant"),
        "warden.session.id": attributes.get("session"),
        telemetry.GEN_AI_CONVERSATION_ID: attributes.get("session"),
        telemetry.GEN_AI_AGENT_NAME: attributes.get("agent"),
        "warden.turn.id": turn_id,
    }
    with turn_span(span_attributes) as span:
        return _Turn(
            turn_id=turn_id,
            user_message=user_message,
            model=model,
            tools=tools,
            system_prompt=system_prompt,
            history=history,
            policy=policy or AllowAll(),
            budget=budget or Unlimited(),
            events=events or NullEventSink(),
            clock=clock or SystemClock(),
            checkpoints=checkpoints if checkpoints is not None else InMemoryCheckpointStore(),
            approval=approval,
            config=config or LoopConfig(),
            attributes=attributes,
            memory=memory,
            span=span,
            span_attributes={k: v for k, v in span_attributes.items() if v is not None},
        ).run()


def observation_text(result: ToolResult, output: Any, *, limit: int) -> str:
    """What the model is shown of a tool's result (its node keeps all of it). A long-running
    tool's job (apps/agents/jobs.py) writes its node with this too: the resumed turn replays
    the text, which must not depend on who ran the tool."""
    if not result.ok:
        return f"error: {result.error}"
    text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    if len(text) > limit:
        text = text[:limit] + f"… [truncated, {len(text) - limit} more characters]"
    return text


class _Stop(Exception):
    """Ends the turn early with an outcome (failure, budget, waiting for approval)."""

    def __init__(
        self,
        status: TurnStatus,
        *,
        reason: str,
        detail: str = "",
        pending: PendingApproval | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or reason)
        self.status, self.reason, self.detail, self.pending = status, reason, detail, pending
        self.extra = dict(extra or {})  # more for turn.failed (a budget's figures)


class _Turn:
    def __init__(
        self,
        *,
        turn_id: str,
        user_message: str,
        model: ModelPort,
        tools: ToolPort,
        system_prompt: str,
        history: Sequence[Message],
        policy: PolicyGate,
        budget: BudgetPort,
        events: EventSink,
        clock: Clock,
        checkpoints: CheckpointStore,
        approval: ApprovalDecision | None,
        config: LoopConfig,
        attributes: Mapping[str, Any],
        span: StepSpan,
        span_attributes: Mapping[str, Any],
        memory: ContextMemory | None = None,
    ) -> None:
        self.turn_id = turn_id
        self.system_prompt, self.user_message, self.memory = system_prompt, user_message, memory
        if memory is not None:
            history = history_messages(memory.exchanges)
            system_prompt = system_with_summary(system_prompt, memory.summary)
        self.model, self.tools, self.policy, self.budget = model, tools, policy, budget
        self.events, self.clock, self.checkpoints = events, clock, checkpoints
        self.approval, self.config, self.attributes = approval, config, attributes
        self.span, self.span_attributes = span, span_attributes
        self.tenant = str(attributes.get("tenant", ""))
        with step_span("prompt_build", attributes=span_attributes) as step:
            self.specs = tuple(tools.list_specs())
            self.parser = StepParser(self.specs, json_steps=config.json_steps)
            self.step_schema = build_step_schema(self.specs) if config.json_steps else None
            self.messages = build_messages(
                system_prompt=system_prompt,
                history=history,
                user_message=user_message,
                tools=self.specs,
                json_steps=config.json_steps,
            )
            step.set_many(
                {"warden.prompt.messages": len(self.messages), "warden.tools": len(self.specs)}
            )
        # What earlier runs of this turn already did; node ids are deterministic.
        self.records: dict[str, StepRecord] = {r.node_id: r for r in checkpoints.load(turn_id)}
        self.model_node = ""  # the model call whose tool calls are being acted on
        self.native = True  # whether that model call used native tool calls
        self.frontier: tuple[str, ...] = ()  # parents of the next model call
        self.used_tools: set[str] = set()  # tools called this turn (kept by trim_tools)
        self.observation_limit = config.max_observation_chars

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> TurnOutcome:
        self.emit("turn.started", started_payload(replayed=len(self.records)))
        try:
            if self.memory is not None:
                self.messages = self.fit_context(self.memory)
            for step_index in range(self.config.max_steps):
                step = self.think(step_index)
                if step.final_answer is not None:
                    return self.finish("completed", final_answer=step.final_answer)
                self.frontier = tuple(
                    self.act(step_index, call_index, call)
                    for call_index, call in enumerate(step.tool_calls)
                )
        except _Stop as stop:
            return self.finish(
                stop.status,
                reason=stop.reason,
                detail=stop.detail,
                pending=stop.pending,
                extra=stop.extra,
            )
        return self.finish(
            "max_steps_exceeded",
            reason="max_steps_exceeded",
            detail=f"no final answer after {self.config.max_steps} steps",
        )

    # --- the context window: summarise old history before the first call --------------------

    def fit_context(self, memory: ContextMemory) -> list[Message]:
        def build(summary: Any, exchanges: Sequence[Any], note: str) -> list[Message]:
            system = system_with_summary(self.system_prompt, summary)
            return build_messages(
                system_prompt=f"{system}\n\n{note}".strip() if note else system,
                history=history_messages(exchanges),
                user_message=self.user_message,
                tools=self.specs,
                json_steps=self.config.json_steps,
            )

        compressor = ContextCompressor(
            memory,
            turn_id=self.turn_id,
            model=self.model,
            budget=self.budget,
            emit=self.emit,
            save=self.save,
            clock=self.clock,
            attributes=self.attributes,
        )
        return compressor.fit(
            build=build,
            tools=() if self.config.json_steps else self.specs,
            max_output_tokens=self.config.max_output_tokens,
            done=self.records.get(compressor.node_id),
        )

    # --- think: one valid step from the model, re-prompting on malformed output ---------------

    def think(self, step_index: int) -> Step:
        # Malformed attempts and their corrections stay in the transcript: later
        # steps see what really happened, so a replay (or a deterministic model
        # that reads its position from the history) stays consistent. The cost is
        # bounded by max_reprompts per step.
        feedback: list[Message] = []
        parents = self.frontier
        error = ""
        for attempt in range(self.config.max_reprompts + 1):
            node_id = f"{self.turn_id}:{step_index}:model:{attempt}"
            record = self.records.get(node_id)
            if record is None or record.status not in ("completed", "malformed"):
                record = self.call_model(
                    node_id, step_index, attempt, parents, [*self.messages, *feedback]
                )
            if record.status == "completed":
                self.model_node, self.native = node_id, record.outputs["native"]
                self.messages.extend(feedback)
                self.messages.append(assistant_message(record))
                return step_from_record(record)
            error = record.outputs["error"]
            feedback += [
                Message(role="assistant", content=malformed_reply(record)),
                Message(role="user", content=REPROMPT.format(error=error), name=FEEDBACK_NAME),
            ]
            parents = (node_id,)
        raise _Stop("failed", reason="malformed_output", detail=error)

    def call_model(
        self,
        node_id: str,
        step_index: int,
        attempt: int,
        parents: tuple[str, ...],
        messages: list[Message],
    ) -> StepRecord:
        max_tokens = max(self.config.min_output_tokens, self.config.max_output_tokens >> attempt)
        with step_span(
            "model_call",
            name="chat",
            client=True,
            attributes={
                **self.span_attributes,
                telemetry.GEN_AI_OPERATION: "chat",
                telemetry.GEN_AI_REQUEST_MAX_TOKENS: max_tokens,
                telemetry.GEN_AI_REQUEST_TEMPERATURE: self.config.temperature,
                "warden.node.id": node_id,
                "warden.step.index": step_index,
                "warden.attempt": attempt,
            },
        ) as span:
            return self._call_model(
                span, node_id, step_index, attempt, parents, messages, max_tokens
            )

    def _call_model(
        self,
        span: StepSpan,
        node_id: str,
        step_index: int,
        attempt: int,
        parents: tuple[str, ...],
        messages: list[Message],
        max_tokens: int,
    ) -> StepRecord:
        request = ModelRequest(
            messages=tuple(messages),
            # Without native tool calling the tools are described in the system
            # prompt and enforced by response_schema instead.
            tools=() if self.config.json_steps else self.specs,
            max_output_tokens=max_tokens,
            temperature=self.config.temperature,
            response_schema=self.step_schema,
            timeout_s=self.config.timeout_s,
            metadata={"turn_id": self.turn_id, "node_id": node_id, "attempt": attempt},
        )
        estimate = estimate_tokens(request)
        ctx = self.ctx(step_index, None, node_id)
        try:
            reservation = self.budget.reserve(estimated_tokens=estimate, ctx=ctx, request=request)
        except BudgetExceeded as exc:
            span.fail(exc.code)
            raise _Stop(
                "budget_exceeded" if exc.code == "budget_exceeded" else "failed",
                reason=exc.code,
                detail=str(exc),
                extra={"budget": exc.scope} if exc.scope is not None else None,
            ) from None
        if reservation.obligations:
            # A smaller request; the hold (for the full one) stays an upper bound.
            request = apply_obligations(
                request,
                reservation.obligations,
                used=self.used_tools,
                keep_tools=self.config.trim_tools_to,
                keep_exchanges=self.config.compressed_history_exchanges,
            )
            if COMPRESS_CONTEXT in reservation.obligations:
                self.observation_limit = min(
                    self.observation_limit, self.config.compressed_observation_chars
                )

        started = self.clock.monotonic()
        usage = Usage()  # settled as zero if the call fails, so the reservation never leaks
        failure: ProviderError | None = None
        unusable = ""  # the provider's reason when the output could not even be parsed
        answered_by = ""
        settlement = None
        try:
            response = self.model.complete(request)
            usage = reported_or_estimated_usage(request, response)
            answered_by = response.endpoint
        except MalformedOutput as exc:
            response, unusable = exc.response, str(exc)
            usage = reported_or_estimated_usage(request, response)
            answered_by = response.endpoint
        except ProviderError as exc:
            failure = exc
        finally:
            settlement = self.budget.settle(reservation, usage=usage, endpoint=answered_by)
        cost = settlement.cost if settlement is not None else ""
        latency_ms = round((self.clock.monotonic() - started) * 1000)

        base = StepRecord(
            node_id=node_id,
            turn_id=self.turn_id,
            kind="model_call",
            status="failed",
            step_index=step_index,
            attempt=attempt,
            parents=parents,
            inputs={
                "message_count": len(messages),
                "max_output_tokens": max_tokens,
                "estimated_tokens": estimate,
                "reserved_tokens": reservation.tokens,
                "reserved_cost": reservation.cost,
                "obligations": sorted(reservation.obligations),
                # What the model was asked, for replay to compare (the prompt is not kept).
                "request_digest": request_digest(request),
            },
            latency_ms=latency_ms,
            created_at=self.clock.now(),
        )
        if failure is not None:
            self.save(replace(base, outputs={"error": str(failure)}))
            # An endpoint that isn't up yet (the local model still building) is worth its
            # own outcome: the user waits for it, rather than reports a broken provider.
            code = str(getattr(failure, "code", ""))
            reason = (
                "endpoint_not_ready"
                if isinstance(failure, EndpointNotReady)
                else code
                if code == "endpoint_unpriced"
                else "provider_error"
            )
            span.fail(reason)
            raise _Stop("failed", reason=reason, detail=str(failure))

        base = replace(
            base,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            scratchpad={"text": response.text, "raw_text": response.raw_text},
        )
        self.model_measured(span, response.model, response.endpoint, usage, cost)
        self.emit(
            "model.called",
            {
                "node_id": node_id,
                "step_index": step_index,
                "attempt": attempt,
                "endpoint": response.endpoint,
                "model": response.model,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost": cost,
                "usage_estimated": usage.estimated,
                "latency_ms": latency_ms,
            },
        )
        try:
            if unusable:
                raise MalformedStep(unusable)
            step = self.parser.parse(response, call_id_prefix=f"call-{step_index}-")
        except MalformedStep as exc:
            span.fail("malformed_output")
            record = replace(
                base,
                status="malformed",
                outputs={
                    "error": str(exc),
                    "attempted_calls": [asdict(call) for call in response.tool_calls],
                    "endpoint": response.endpoint,
                    "cost": cost,
                    "usage_estimated": usage.estimated,
                },
            )
            self.emit(
                "step.malformed",
                {
                    "node_id": node_id,
                    "step_index": step_index,
                    "attempt": attempt,
                    "error": str(exc),
                },
            )
            self.save(record)
            return record

        record = replace(
            base,
            status="completed",
            outputs={
                "rationale": step.rationale,
                "tool_calls": [asdict(call) for call in step.tool_calls],
                "final_answer": step.final_answer,
                "native": bool(response.tool_calls) or not self.config.json_steps,
                "endpoint": response.endpoint,
                "model": response.model,
                "cost": cost,
                "usage_estimated": usage.estimated,
            },
            scratchpad={**base.scratchpad, "thought": step.thought},
        )
        if step.rationale:
            # Only the short rationale goes out; the full thought stays in the scratchpad.
            self.emit(
                "step.rationale",
                {"node_id": node_id, "step_index": step_index, "rationale": step.rationale},
            )
        # Next: the first call's policy decision, then that call's first write (its started
        # node, the check-in before it runs, or the decision parking or denying it). When the
        # gate decides in this thread with no I/O, nothing can stall in between, and the record
        # goes with that write: a crash before it asks the model again, as a crash while the
        # record was written alone would. A decision that leaves the process (a policy helper,
        # OPA) comes after the record is durable.
        local = bool(step.tool_calls) and self.policy.decides_in_process(step.tool_calls[0])
        self.save(record, with_next_write=local)
        return record

    # --- act: gate, maybe park for approval, execute, observe --------------------------------

    def act(self, step_index: int, call_index: int, call: ToolCall) -> str:
        """Handles one tool call; returns the id of its observation node."""
        key = f"{self.turn_id}:{step_index}:{call_index}"
        self.used_tools.add(call.name)
        record = self.records.get(key)
        if record is None:
            record = self.gate(key, step_index, call_index, call)
        elif record.status == "waiting_approval":
            record = self.decide(record, call)
        elif record.status == "started" and not self.tools.is_idempotent(call.name):
            # It may or may not have had its effect before the worker died; running
            # it again could do it twice. Stop where a human can see it.
            raise _Stop(
                "failed",
                reason="non_idempotent_tool_interrupted",
                detail=f"tool {call.name!r} ({key}) was interrupted and is not idempotent",
            )
        if record.status not in TOOL_FINISHED:
            # allowed, approved, or an interrupted idempotent call being re-run
            finished = self.execute(record, call)
            # The observation (and the result's event) first, then the call's checkpoint:
            # a store can write them together, and nothing of the call is left to write.
            observation = self.observe(finished, call)
            self.write(self.checkpoints.mark_finished, finished)
            return observation
        return self.observe(record, call)

    def gate(self, key: str, step_index: int, call_index: int, call: ToolCall) -> StepRecord:
        record = StepRecord(
            node_id=key,
            turn_id=self.turn_id,
            kind="tool_call",
            status="allowed",
            step_index=step_index,
            call_index=call_index,
            parents=(self.model_node,),
            inputs={"tool": call.name, "arguments": call.arguments, "call_id": call.id},
            created_at=self.clock.now(),
        )
        with step_span(
            "policy_check",
            attributes={
                **self.span_attributes,
                telemetry.GEN_AI_TOOL_NAME: call.name,
                "warden.node.id": key,
                "warden.step.index": step_index,
            },
        ) as span:
            try:
                decision = self.policy.check(call, ctx=self.ctx(step_index, call_index, key))
            except Exception as exc:
                # Fail closed: a broken policy engine must not wave calls through.
                decision = GateDecision.deny(f"policy check failed ({type(exc).__name__}: {exc})")
                span.fail(type(exc).__name__)
            span.set_many({"warden.policy.decision": decision.kind})
        if decision.kind == "deny":
            metric_add("policy_denials", (self.tenant, call.name))
        if decision.kind == "allow":
            return record  # saved as "started" by execute, right before it runs
        if decision.kind == "require_approval":
            record = replace(record, status="waiting_approval", outputs={"reason": decision.reason})
            self.save(record)
            return self.decide(record, call)
        record = replace(
            record,
            status="denied",
            outputs={
                "reason": decision.reason,
                "observation": f"denied by policy: {decision.reason}",
            },
        )
        self.emit(
            "policy.denied",
            {
                "node_id": key,
                "tool": call.name,
                "arguments": call.arguments,
                "reason": decision.reason,
            },
        )
        self.save(record)
        return record

    def decide(self, record: StepRecord, call: ToolCall) -> StepRecord:
        """Applies the approval decision for a parked call, or parks (again)."""
        decision = self.approval
        reason = record.outputs.get("reason", "")
        if decision is None or decision.call_key != record.node_id:
            pending = PendingApproval(call=call, call_key=record.node_id, reason=reason)
            self.emit(
                "turn.waiting",
                {
                    "node_id": record.node_id,
                    "call_key": record.node_id,
                    "tool": call.name,
                    "arguments": call.arguments,
                    "reason": reason,
                },
            )
            raise _Stop(
                "waiting_approval", reason="approval_required", detail=reason, pending=pending
            )
        parked = record.created_at
        with step_span(
            "approval_wait",
            attributes={
                **self.span_attributes,
                telemetry.GEN_AI_TOOL_NAME: call.name,
                "warden.node.id": record.node_id,
                "warden.approval.approved": decision.approved,
            },
            # From when the call was parked to the run that applies the decision.
            start_time_ns=int(parked.timestamp() * 1e9) if parked is not None else None,
        ):
            pass
        approval = {
            "approved": decision.approved,
            "approver": decision.approver,
            "rationale": decision.rationale,
        }
        record = replace(record, inputs={**record.inputs, "approval": approval})
        if decision.approved:
            return replace(record, status="approved")
        observation = f"rejected by {decision.approver}: {decision.rationale}"
        record = replace(
            record, status="rejected", outputs={**record.outputs, "observation": observation}
        )
        self.emit(
            "tool.result",
            {
                "node_id": record.node_id,
                "tool": call.name,
                "ok": False,
                "status": "rejected",
                "error": observation,
            },
        )
        self.save(record)
        return record

    def execute(self, record: StepRecord, call: ToolCall) -> StepRecord:
        rerun = record.status == "started"
        started = replace(record, status="started")
        # Durable before the tool runs: after a crash this marker is the only sign
        # that a non-idempotent tool may already have had its effect.
        self.write(self.checkpoints.mark_started, started)
        self.emit(
            "tool.call",
            {
                "node_id": record.node_id,
                "tool": call.name,
                "arguments": call.arguments,
                "rerun": rerun,
            },
        )
        t0 = self.clock.monotonic()
        ctx = self.ctx(record.step_index, record.call_index, record.node_id)
        with step_span(
            "tool_call",
            name=f"execute_tool {call.name}",
            attributes={
                **self.span_attributes,
                telemetry.GEN_AI_OPERATION: "execute_tool",
                telemetry.GEN_AI_TOOL_NAME: call.name,
                telemetry.GEN_AI_TOOL_CALL_ID: call.id,
                telemetry.GEN_AI_TOOL_TYPE: "function",
                "warden.node.id": record.node_id,
                "warden.step.index": record.step_index,
                "warden.tool.rerun": rerun,
            },
        ) as span:
            try:
                result = self.tools.execute(call, ctx=ctx)
            except Exception as exc:
                # The model gets to see the failure and react; the turn goes on.
                result = ToolResult(ok=False, error=f"{type(exc).__name__}: {exc}")
                span.fail(type(exc).__name__)
            if not result.ok and not span.failed:
                span.fail("tool_error")
        latency_ms = round((self.clock.monotonic() - t0) * 1000)
        output = jsonable(result.output)
        finished = replace(
            started,
            status="completed" if result.ok else "error",
            outputs={
                **started.outputs,
                "ok": result.ok,
                "output": output,
                "error": result.error,
                "observation": self.observation_text(result, output),
            },
            latency_ms=latency_ms,
        )
        self.emit(
            "tool.result",
            {
                "node_id": record.node_id,
                "tool": call.name,
                "ok": result.ok,
                "status": finished.status,
                "output": output,
                "error": result.error,
                "latency_ms": latency_ms,
            },
        )
        return finished  # marked finished by act, once its observation is queued

    def observe(self, record: StepRecord, call: ToolCall) -> str:
        text = record.outputs["observation"]
        node_id = f"{record.node_id}:obs"
        if node_id not in self.records:
            self.save(
                StepRecord(
                    node_id=node_id,
                    turn_id=self.turn_id,
                    kind="observation",
                    status="completed",
                    step_index=record.step_index,
                    call_index=record.call_index,
                    parents=(record.node_id,),
                    outputs={"content": text},
                    created_at=self.clock.now(),
                )
            )
        if self.native:
            self.messages.append(
                Message(role="tool", content=text, tool_call_id=call.id, name=call.name)
            )
        else:
            self.messages.append(observation_message(call.name, text))
        return node_id

    def observation_text(self, result: ToolResult, output: Any) -> str:
        return observation_text(result, output, limit=self.observation_limit)

    # --- plumbing ---------------------------------------------------------------------------

    def finish(
        self,
        status: TurnStatus,
        *,
        final_answer: str | None = None,
        reason: str = "",
        detail: str = "",
        pending: PendingApproval | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> TurnOutcome:
        models = [r for r in self.records.values() if r.kind == "model_call"]
        usage = Usage(
            input_tokens=sum(r.input_tokens for r in models),
            output_tokens=sum(r.output_tokens for r in models),
        )
        totals = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
        self.span.set_many(
            {
                "warden.turn.status": status,
                telemetry.GEN_AI_INPUT_TOKENS: usage.input_tokens,
                telemetry.GEN_AI_OUTPUT_TOKENS: usage.output_tokens,
            }
        )
        if status not in ("completed", "waiting_approval"):
            self.span.fail(reason or status)
        # Terminal events are emitted even when everything was replayed: the worker
        # may have died after the last checkpoint but before announcing the end.
        if status == "completed":
            self.emit("turn.completed", {"final_answer": final_answer, **totals})
        elif status != "waiting_approval":  # turn.waiting was emitted when parking
            self.emit(
                "turn.failed",
                {"status": status, "reason": reason, "detail": detail, **(extra or {})},
            )
        return TurnOutcome(
            status=status,
            final_answer=final_answer,
            reason=reason,
            detail=detail,
            pending=pending,
            steps=tuple(self.records.values()),
            usage=usage,
        )

    def model_measured(
        self, span: StepSpan, model: str, endpoint: str, usage: Usage, cost: str
    ) -> None:
        """A model call's figures on its span and in the token and cost counters."""
        span.set_many(
            {
                telemetry.GEN_AI_REQUEST_MODEL: model,
                telemetry.GEN_AI_RESPONSE_MODEL: model,
                telemetry.GEN_AI_INPUT_TOKENS: usage.input_tokens,
                telemetry.GEN_AI_OUTPUT_TOKENS: usage.output_tokens,
                "warden.endpoint": endpoint,
                "warden.usage.estimated": usage.estimated,
                "warden.cost": float(cost) if cost else None,
            }
        )
        if span.span.is_recording():
            span.span.update_name(f"chat {model}")
        metric_add("tokens", (self.tenant, model, "input"), usage.input_tokens)
        metric_add("tokens", (self.tenant, model, "output"), usage.output_tokens)
        if cost:
            metric_add("cost", (self.tenant, model), float(cost))

    def ctx(self, step_index: int, call_index: int | None, key: str) -> StepContext:
        return StepContext(
            turn_id=self.turn_id,
            step_index=step_index,
            call_index=call_index,
            idempotency_key=key,
            attributes=self.attributes,
        )

    def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        self.events.emit(event_type, {"turn_id": self.turn_id, **payload})

    def save(self, record: StepRecord, *, with_next_write: bool = False) -> None:
        self.checkpoints.save(record, with_next_write=with_next_write)
        self.records[record.node_id] = record

    def write(self, method: Callable[[StepRecord], None], record: StepRecord) -> None:
        method(record)
        self.records[record.node_id] = record
