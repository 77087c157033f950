"""The ports a replayed turn runs over: each serves the record, and the store compares every
node the loop writes with the recorded one."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from apps.agents.adapters import Toolbox
from apps.agents.replay.record import BUDGET_CODES, PolicySource, Recording, compare_call
from apps.agents.runtime.memory import InMemoryCheckpointStore
from apps.agents.runtime.ports import (
    BudgetExceeded,
    GateDecision,
    Reservation,
    Settlement,
    StepContext,
    StepRecord,
    ToolResult,
)
from apps.llm.types import (
    EndpointNotReady,
    EndpointUnpriced,
    MalformedOutput,
    ModelRequest,
    ModelResponse,
    ProviderError,
    ToolCall,
    ToolSpec,
    Usage,
)
from apps.policies import selectors as policy_selectors
from apps.policies import services as policy_services
from apps.policies.engines.decision import Decision, combine
from apps.policies.models import PolicyMode, PolicyVersion


class ReplayModel:
    """Answers each model call with the output recorded for its node."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording

    def complete(self, request: ModelRequest) -> ModelResponse:
        node_id = str(request.metadata.get("node_id", ""))
        record = self.recording.get(node_id)
        if record is None or record.kind != "model_call":
            ctx = StepContext(
                turn_id=str(self.recording.turn.id),
                step_index=int(node_id.split(":")[1]) if node_id.count(":") >= 3 else 0,
                call_index=None,
                idempotency_key=node_id,
            )
            self.recording.missing(node_id, "model_call", ctx, "a model call")
        outputs, pad = record.outputs, record.scratchpad
        usage = Usage(
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            estimated=bool(outputs.get("usage_estimated", False)),
        )
        text, raw = str(pad.get("text", "")), str(pad.get("raw_text", ""))
        endpoint, model = str(outputs.get("endpoint", "")), str(outputs.get("model", ""))
        if record.status == "failed":
            error = str(outputs["error"])
            if self.recording.turn.outcome == "endpoint_not_ready":
                raise EndpointNotReady(error)
            if self.recording.turn.outcome == "endpoint_unpriced":
                raise EndpointUnpriced(error)
            raise ProviderError(error)
        if record.status == "malformed":
            # Replayed with the verdict it had: a provider's own rejection (arguments that
            # were not JSON) cannot be rebuilt from what was kept of the reply.
            calls = tuple(ToolCall(**c) for c in outputs.get("attempted_calls") or [])
            response = ModelResponse(
                text=text, tool_calls=calls, usage=usage, endpoint=endpoint, raw_text=raw
            )
            raise MalformedOutput(str(outputs["error"]), response=response)
        calls = ()
        if outputs["native"] and outputs["tool_calls"]:
            calls = tuple(ToolCall(**c) for c in outputs["tool_calls"])
        return ModelResponse(
            text=text, tool_calls=calls, usage=usage, model=model, endpoint=endpoint, raw_text=raw
        )


class ReplayBudget:
    """Grants each model call the obligations recorded on its node; refuses where the
    recorded turn was refused (no model call was recorded there)."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording

    def reserve(
        self, *, estimated_tokens: int, ctx: StepContext, request: ModelRequest | None = None
    ) -> Reservation:
        record = self.recording.get(ctx.idempotency_key)
        turn = self.recording.turn
        if record is None and turn.outcome in BUDGET_CODES:
            raise BudgetExceeded(turn.detail or turn.outcome, code=turn.outcome)
        obligations = frozenset(record.inputs.get("obligations") or ()) if record else frozenset()
        return Reservation(id=ctx.idempotency_key, tokens=estimated_tokens, obligations=obligations)

    def settle(
        self, reservation: Reservation, *, usage: Usage, endpoint: str = ""
    ) -> Settlement | None:
        return None


class ReplayTools:
    """Returns each tool call's recorded result; validates against the agent's tools now."""

    def __init__(self, recording: Recording, toolbox: Toolbox) -> None:
        self.recording, self.toolbox = recording, toolbox

    def list_specs(self) -> Sequence[ToolSpec]:
        return self.toolbox.list_specs()

    def is_idempotent(self, name: str) -> bool:
        return self.toolbox.is_idempotent(name)

    def execute(self, call: ToolCall, *, ctx: StepContext) -> ToolResult:
        record = self.recording.get(ctx.idempotency_key)
        if record is None or record.status not in ("completed", "error"):
            what = f"a call of tool {call.name!r}"
            if record is not None and record.status != "started":
                self.recording.diverge(
                    node_id=ctx.idempotency_key,
                    kind="tool_call",
                    code="tool_status_differs",
                    field="status",
                    recorded=record.status,
                    replayed="executed",
                    message=f"the replay runs {what} that the record shows as {record.status}",
                )
            self.recording.missing(ctx.idempotency_key, "tool_call", ctx, what)
        outputs = record.outputs
        return ToolResult(
            ok=bool(outputs["ok"]), output=_as_shown(outputs), error=outputs.get("error")
        )


_TRUNCATED = re.compile(r"… \[truncated, (\d+) more characters\]$")


def _as_shown(outputs: Mapping[str, Any]) -> Any:
    """The recorded output in the key order the model saw it.

    Postgres' JSONB keeps no key order, so an object output comes back reordered, and the
    observation rebuilt from it would read differently from the one recorded. The recorded
    observation is the output as the model saw it: parsed, it gives the object in its own
    order. An observation cut at the model's limit cannot be parsed; its visible part and
    the count of what was cut stand in for the output (only the visible part is ever shown).
    """
    output, shown = outputs.get("output"), outputs.get("observation")
    if not outputs.get("ok") or isinstance(output, str) or not isinstance(shown, str):
        return output
    try:
        parsed = json.loads(shown)
    except ValueError:
        cut = _TRUNCATED.search(shown)
        if cut is None:
            return output
        return shown[: cut.start()] + " " * int(cut.group(1))
    return parsed if parsed == output else output


class ReplayGate:
    """The policy gate, evaluated for real on the recorded inputs (module docstring)."""

    def __init__(self, recording: Recording, policies: PolicySource) -> None:
        self.recording, self.policies = recording, policies
        self._current: list[Any] | None = None

    def decides_in_process(self, call: ToolCall) -> bool:
        return False  # nothing here is written anyway (an in-memory store)

    def check(self, call: ToolCall, *, ctx: StepContext) -> GateDecision:
        key = ctx.idempotency_key
        recording = self.recording
        recorded_call = recording.get(key)
        if recorded_call is None or recorded_call.kind != "tool_call":
            recording.missing(key, "tool_call", ctx, f"a call of tool {call.name!r}")
        compare_call(recording, recorded_call, call.name, call.arguments)
        decision_node = recording.get(f"{key}:policy")
        assert decision_node is not None  # Recording._check saw to it
        recording.reached.add(decision_node.node_id)
        recorded_outcome = str(decision_node.outputs["outcome"])
        recorded_reasons = [str(r) for r in decision_node.outputs.get("reasons", [])]
        recorded_input = decision_node.inputs.get("input") or {}
        if not recorded_input:
            # The engine failed when the call was made (a fail-closed deny recorded without an
            # input): there is nothing to evaluate again; the recorded verdict stands.
            outcome, reason = recorded_outcome, "; ".join(recorded_reasons)
        else:
            input_doc = {k: v for k, v in recorded_input.items() if k != "arguments_digest"}
            input_doc["arguments"] = call.arguments
            decision = self._decide(call.name, input_doc, decision_node)
            outcome, reason = decision.outcome, decision.reason
            if outcome != recorded_outcome:
                recording.diverge(
                    node_id=decision_node.node_id,
                    kind="policy",
                    code="policy_decision_differs",
                    field="outcome",
                    recorded={"outcome": recorded_outcome, "reasons": recorded_reasons},
                    replayed={"outcome": outcome, "reasons": list(decision.enforced.reasons)},
                    message=f"the policy decision on the call of {call.name!r} is {outcome} "
                    f"now, {recorded_outcome} in the record",
                )
        if outcome == "deny":
            return GateDecision.deny(reason)
        if outcome == "require_approval":
            return GateDecision.require_approval(reason)
        return GateDecision.allow()

    def _decide(self, tool: str, input_doc: dict[str, Any], node: StepRecord) -> Decision:
        turn = self.recording.turn
        if self.policies == "current":
            if self._current is None:
                self._current = policy_selectors.policies_for_agent(
                    tenant_id=turn.tenant_id, agent_slug=turn.session.agent.slug
                )
            return policy_services.decision_make(
                tenant_id=turn.tenant_id,
                agent_slug=turn.session.agent.slug,
                tool_name=tool,
                input_doc=input_doc,
                agent_policies=self._current,
            )
        evaluations = node.outputs.get("policies") or []
        ids = [str(e.get("version_id", "")) for e in evaluations]
        versions = {
            str(v.id): v for v in PolicyVersion.objects.filter(tenant_id=turn.tenant_id, id__in=ids)
        }
        enforced, every = [], []
        for evaluation, version_id in zip(evaluations, ids, strict=True):
            version = versions.get(version_id)
            if version is None:
                self.recording.incomplete(
                    f"policy {evaluation.get('name')!r} v{evaluation.get('version')}, which "
                    f"decided {node.node_id}, no longer exists",
                    node.node_id,
                )
            label = f"policy {evaluation.get('name')!r} v{version.number}"
            run = policy_services.version_run(version=version, input_doc=input_doc, label=label)
            every.append(run.result)
            if evaluation.get("mode") == PolicyMode.ENFORCE:
                enforced.append(run.result)
        return Decision(enforced=combine(enforced), would_be=combine(every))


# The model-call inputs compared, in the order a difference is best explained.
_MODEL_INPUTS = (
    "message_count",
    "max_output_tokens",
    "obligations",
    "request_digest",
    "estimated_tokens",
)


class ComparingStore(InMemoryCheckpointStore):
    """Checkpoints in memory; every node the loop writes is compared with the record."""

    def __init__(self, recording: Recording) -> None:
        super().__init__()
        self.recording = recording
        self.compared = 0

    def save(self, record: StepRecord, *, with_next_write: bool = False) -> None:
        self._compare(record)
        super().save(record)

    def mark_started(self, record: StepRecord) -> None:
        self._compare(record)
        super().mark_started(record)

    def mark_finished(self, record: StepRecord) -> None:
        self._compare(record)
        super().mark_finished(record)

    def _differ(
        self, record: StepRecord, code: str, name: str, old: Any, new: Any, msg: str
    ) -> NoReturn:
        self.recording.diverge(
            node_id=record.node_id,
            kind=record.kind,
            code=code,
            field=name,
            recorded=old,
            replayed=new,
            message=msg,
            step_index=record.step_index,
            call_index=record.call_index,
        )

    def _compare(self, record: StepRecord) -> None:
        recorded = self.recording.get(record.node_id)
        self.compared += 1
        if recorded is None or recorded.kind != record.kind:
            self._differ(
                record,
                "unrecorded_node",
                "kind",
                recorded.kind if recorded else None,
                record.kind,
                f"the replay writes a {record.kind} node ({record.node_id}) the log does not have",
            )
        self.recording.reached.add(record.node_id)
        if record.kind == "model_call":
            self._compare_model(record, recorded)
        elif record.kind == "tool_call":
            self._compare_tool(record, recorded)
        elif record.kind == "observation":
            old, new = recorded.outputs.get("content"), record.outputs.get("content")
            if old != new:
                self._differ(
                    record,
                    "observation_differs",
                    "content",
                    old,
                    new,
                    "the model is shown a different observation",
                )

    def _compare_model(self, record: StepRecord, recorded: StepRecord) -> None:
        for name in _MODEL_INPUTS:
            if name in recorded.inputs and recorded.inputs[name] != record.inputs.get(name):
                self._differ(
                    record,
                    "model_input_differs",
                    f"inputs.{name}",
                    recorded.inputs[name],
                    record.inputs.get(name),
                    f"the model would be asked something else than in the record ({name} differs)",
                )
        if record.status != recorded.status:
            detail = record.outputs.get("error", "")
            self._differ(
                record,
                "model_step_differs",
                "status",
                recorded.status,
                record.status,
                f"the recorded reply is {record.status} now, {recorded.status} in the record"
                + (f": {detail}" if detail else ""),
            )
        if record.status == "completed":
            for name in ("tool_calls", "final_answer"):
                if recorded.outputs.get(name) != record.outputs.get(name):
                    self._differ(
                        record,
                        "model_step_differs",
                        f"outputs.{name}",
                        recorded.outputs.get(name),
                        record.outputs.get(name),
                        f"the recorded reply reads as a different step now ({name} differs)",
                    )

    def _compare_tool(self, record: StepRecord, recorded: StepRecord) -> None:
        compare_call(
            self.recording, recorded, str(record.inputs["tool"]), record.inputs["arguments"]
        )
        if record.status in ("started", "approved"):
            return  # on its way; its end is compared when it is written
        if record.status == "waiting_approval":
            if recorded.status != "waiting_approval" and "approval" not in recorded.inputs:
                self._differ(
                    record,
                    "tool_status_differs",
                    "status",
                    recorded.status,
                    record.status,
                    "the replay parks the call for approval; the record never did",
                )
            return
        if record.status != recorded.status:
            self._differ(
                record,
                "tool_status_differs",
                "status",
                recorded.status,
                record.status,
                f"the call ends {record.status} now, {recorded.status} in the record",
            )
        old, new = recorded.outputs.get("observation"), record.outputs.get("observation")
        if old != new:
            self._differ(
                record,
                "observation_differs",
                "outputs.observation",
                old,
                new,
                "the call's result reads differently to the model",
            )
