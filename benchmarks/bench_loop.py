"""The governed loop's own overhead, against the design document's bare react_loop.

Both run the same three-step turn (two tool calls, then an answer) over an
in-memory model and tools, so the difference is what governance costs per turn
in the loop itself: step-schema validation, checkpoint records, events, budget
and policy hooks. No database: the Django ports are measured by the end-to-end
suite, not here. Usage: .venv/bin/python benchmarks/bench_loop.py [--turns 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.agents.runtime.loop import run_turn
from apps.agents.runtime.memory import DictTools, InMemoryCheckpointStore, ListEventSink
from apps.agents.runtime.ports import StepContext
from apps.llm.types import ModelRequest, ModelResponse, ToolCall

SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
RESPONSES = [
    ModelResponse(text="adding", tool_calls=(ToolCall("c1", "add", {"a": 2, "b": 3}),)),
    ModelResponse(text="again", tool_calls=(ToolCall("c2", "add", {"a": 5, "b": 5}),)),
    ModelResponse(text="The answer is 10."),
]


class Replay:
    def __init__(self) -> None:
        self.i = 0

    def complete(self, request: ModelRequest) -> ModelResponse:
        response = RESPONSES[self.i]
        self.i += 1
        return response


def bare_loop(user_message: str, model: Replay, tools: dict[str, Any], max_steps: int = 10) -> str:
    """The design document's loop: think, act, observe — nothing else."""
    messages: list[Any] = [{"role": "user", "content": user_message}]
    for _ in range(max_steps):
        response = model.complete(ModelRequest(messages=()))
        if not response.tool_calls:
            return response.text
        for call in response.tool_calls:
            observation = tools[call.name](**call.arguments)
            messages.append({"role": "tool", "content": json.dumps(observation)})
    return "max steps"


def governed(n: int) -> list[float]:
    samples = []
    for i in range(n):
        tools = DictTools().add("add", lambda a, b: a + b, input_schema=SCHEMA, idempotent=True)
        started = time.perf_counter()
        outcome = run_turn(
            turn_id=f"t{i}",
            user_message="add",
            model=Replay(),
            tools=tools,
            events=ListEventSink(),
            checkpoints=InMemoryCheckpointStore(),
        )
        samples.append(time.perf_counter() - started)
        assert outcome.final_answer == "The answer is 10."
    return samples


def bare(n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        answer = bare_loop("add", Replay(), {"add": lambda a, b: a + b})
        samples.append(time.perf_counter() - started)
        assert answer == "The answer is 10."
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=2000)
    args = parser.parse_args()
    _ = StepContext  # imported for readers: the context every port call gets
    results = {"bare": bare(args.turns), "governed": governed(args.turns)}
    for name, samples in results.items():
        micro = [s * 1e6 for s in samples]
        p95 = statistics.quantiles(micro, n=20)[-1]
        print(
            f"{name:9s} turns={len(micro)}  median={statistics.median(micro):8.1f} µs  "
            f"p95={p95:8.1f} µs"
        )
    overhead = statistics.median(results["governed"]) - statistics.median(results["bare"])
    print(f"governance overhead per 3-step turn (median): {overhead * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
