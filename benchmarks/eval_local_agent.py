"""How often does the local agent pick the right tool with valid arguments?

Serves the embedded model with llama.cpp (as `make run` does), then runs the local agent as
the demo seeds it (its system prompt, JSON-schema-constrained steps, the loop's settings)
over a dozen simple tool tasks with the real builtin `calculator` and `clock_now` and the
WASM `word_count`. Per task it records the first tool the agent chose, whether its
arguments were valid (schema and tool both accepted them), whether the turn completed and
whether the answer holds the expected text; it prints a table and the rates.

Needs `make install-llm`. Usage:
    .venv/bin/python benchmarks/eval_local_agent.py [--model smollm2] [--option NAME=JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# No database or Redis is used: the offline settings need no running service.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.offline")

import django  # noqa: E402

django.setup()

from apps.agents.demo import (  # noqa: E402
    LOCAL_AGENT_MAX_STEPS,
    LOCAL_AGENT_PROMPT,
    LOCAL_ENDPOINT_OPTIONS,
)
from apps.agents.runtime.loop import LoopConfig, run_turn  # noqa: E402
from apps.agents.runtime.memory import ListEventSink  # noqa: E402
from apps.agents.runtime.ports import StepContext, ToolResult  # noqa: E402
from apps.core.egress import EgressPolicy  # noqa: E402
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
from apps.tools.executors.wasm import WasmExecutor, shipped_module  # noqa: E402
from apps.tools.services import WORD_COUNT_TOOL  # noqa: E402
from devtools.embedded import free_port  # noqa: E402

# (prompt, the tool that should be called, text the answer should contain or None)
TASKS: list[tuple[str, str, str | None]] = [
    ("What is 17 times 23?", "calculator", "391"),
    ("What is 12 plus 30?", "calculator", "42"),
    ("Compute (120 - 45) / 5.", "calculator", "15"),
    ("How much is 100 divided by 4?", "calculator", "25"),
    ("What is 2 to the power of 10?", "calculator", "1024"),
    ("Subtract 58 from 1000.", "calculator", "942"),
    ("What time is it in UTC right now?", "clock_now", None),
    ("What day of the week is it in Europe/Paris?", "clock_now", None),
    ("What's the current time in Asia/Tokyo?", "clock_now", None),
    ("How many words are in this sentence: the quick brown fox jumps", "word_count", "5"),
    ("Count the words in: to be or not to be", "word_count", "6"),
    ("Use word_count on 'hello big wide world'.", "word_count", "4"),
]


@dataclass
class Tools:
    specs: list[ToolSpec]
    calls: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)

    def list_specs(self) -> list[ToolSpec]:
        return self.specs

    def is_idempotent(self, name: str) -> bool:
        return True

    def execute(self, call: ToolCall, *, ctx: StepContext) -> ToolResult:
        context = CallContext(
            tenant_id="eval",
            session_id="eval",
            turn_id=ctx.turn_id,
            idempotency_key=ctx.idempotency_key,
        )
        try:
            if call.name == "word_count":
                outcome = WASM.execute(WORD_COUNT_TOOL, call.arguments, ctx=context)
                output: Any = outcome.content
            else:
                tool = BUILTINS.get(call.name)
                assert tool is not None
                output = tool.function(dict(call.arguments), BuiltinCall(ctx=context, timeout_s=5))
        except ToolError as exc:
            self.calls.append((call.name, dict(call.arguments), False))
            return ToolResult(ok=False, error=f"{exc.code}: {exc}")
        self.calls.append((call.name, dict(call.arguments), True))
        return ToolResult(ok=True, output=output)


class Model:
    def __init__(self, provider: LocalLlamaProvider) -> None:
        self.provider = provider

    def complete(self, request: ModelRequest) -> ModelResponse:
        return self.provider.complete(request)


BUILTINS = load_builtins()
WASM = WasmExecutor({"word_count": shipped_module("word_count")})


def specs() -> list[ToolSpec]:
    out = []
    for name in ("calculator", "clock_now"):
        tool = BUILTINS.get(name)
        assert tool is not None
        out.append(ToolSpec(tool.name, tool.description, dict(tool.input_schema)))
    out.append(
        ToolSpec(WORD_COUNT_TOOL.name, WORD_COUNT_TOOL.description, WORD_COUNT_TOOL.input_schema)
    )
    return out


def serve(model: str) -> tuple[subprocess.Popen[bytes], int]:
    path = gguf_path(model, cache_dir=ROOT / "var" / "models")
    if path is None:
        sys.exit(f"the {model} model is not installed: make install-llm")
    port = free_port()
    (ROOT / "var").mkdir(exist_ok=True)
    log = (ROOT / "var" / f"eval-llama-{model}.log").open("wb")
    command = server_command(path, port=port, model_alias=model, chat_format=CHAT_FORMATS[model])
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return server, port
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            sys.exit(f"llama.cpp did not start; see {log.name}")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="override one of the local endpoint's options, e.g. thought_max_chars=null",
    )
    args = parser.parse_args()
    options = dict(LOCAL_ENDPOINT_OPTIONS)
    for option in args.option:
        name, _, value = option.partition("=")
        options[name] = json.loads(value)
    server, port = serve(args.model)
    try:
        endpoint = replace(
            local_endpoint(
                port=port, model_alias=args.model, egress=EgressPolicy((f"127.0.0.1:{port}",))
            ),
            options=options,  # as the demo seeds the local endpoint, unless overridden
        )
        provider = LocalLlamaProvider(endpoint)
        right = valid = completed = answered = 0
        started = time.monotonic()
        print(f"{'task':<62} {'first tool':<12} {'args':<6} {'turn':<20} answer")
        for prompt, expected_tool, expected_text in TASKS:
            tools = Tools(specs())
            outcome = run_turn(
                turn_id="eval",
                user_message=prompt,
                model=Model(provider),
                tools=tools,
                system_prompt=LOCAL_AGENT_PROMPT,
                events=ListEventSink(),
                # As the orchestrator runs the seeded local agent.
                config=LoopConfig(
                    json_steps=True,
                    max_steps=LOCAL_AGENT_MAX_STEPS,
                    max_reprompts=2,
                    max_output_tokens=256,
                    min_output_tokens=64,
                ),
            )
            first = tools.calls[0] if tools.calls else None
            picked = first is not None and first[0] == expected_tool
            ok_args = picked and first is not None and first[2]
            done = outcome.status == "completed"
            answer = outcome.final_answer or ""
            hit = done and (expected_text is None or expected_text in answer)
            right += picked
            valid += ok_args
            completed += done
            answered += hit
            shown = f"{first[0]} " if first else "(none) "
            print(
                f"{prompt[:61]:<62} {shown:<12} {'valid' if ok_args else '-':<6} "
                f"{(outcome.reason or outcome.status)[:20]:<20} "
                f"{answer[:40]!r}",
                flush=True,
            )
        n = len(TASKS)
        print()
        overridden = f", options {' '.join(args.option)}" if args.option else ""
        print(
            f"model {args.model}{overridden}, {n} tasks, "
            f"{(time.monotonic() - started) / n:.1f} s a task"
        )
        print(f"right tool first:             {right}/{n} ({right / n:.0%})")
        print(f"right tool with valid args:   {valid}/{n} ({valid / n:.0%})")
        print(f"turns completed:              {completed}/{n} ({completed / n:.0%})")
        print(f"answer holds the expected:    {answered}/{n} ({answered / n:.0%})")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
