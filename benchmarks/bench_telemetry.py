"""What the tracing costs per step (README "Traces and metrics").

Three setups, each in a process of its own (a process sets its tracer provider once):
- `api`: no provider at all (the OpenTelemetry API's no-op spans), the floor;
- `off`: the platform's provider with nothing exporting (OTEL_EXPORTER_OTLP_ENDPOINT unset):
  spans are dropped by the sampler but get real trace ids;
- `export`: recording every span into a batch processor (an exporter that drops them, so
  no network is measured), as with OTEL_EXPORTER_OTLP_ENDPOINT set.

For each: one step span with a model call's attributes, alone (µs per step), and the governed
loop of benchmarks/bench_loop.py (a 3-step turn: prompt build, 3 model calls, 2 policy checks,
2 tool calls — 8 step spans and the turn's), per turn. No database: psycopg's spans are one
per query and cost the same as a step span here.
Usage: .venv/bin/python benchmarks/bench_telemetry.py [--steps 20000] [--turns 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from apps.core import telemetry
from apps.core.telemetry import step_span
from benchmarks.bench_loop import governed

ATTRIBUTES = {
    "warden.tenant.id": "0b7f5d2e-9a51-4c1e-8d3f-7e2a1b6c9d40",
    "warden.session.id": "5f1c3e8a-2b7d-4e6f-9a0c-1d2e3f4a5b6c",
    "gen_ai.conversation.id": "5f1c3e8a-2b7d-4e6f-9a0c-1d2e3f4a5b6c",
    "warden.turn.id": "8c9d0e1f-2a3b-4c5d-6e7f-8a9b0c1d2e3f",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.max_tokens": 1024,
    "warden.node.id": "8c9d0e1f:0:model:0",
    "warden.step.index": 0,
}


class Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def per_step(n: int) -> float:
    """Median µs of one step span (in batches of 100, so the clock is not what is timed)."""
    samples = []
    for _ in range(n // 100):
        started = time.perf_counter()
        for _ in range(100):
            with step_span("model_call", name="chat", client=True, attributes=ATTRIBUTES) as s:
                s.set_many({"gen_ai.usage.input_tokens": 812, "gen_ai.usage.output_tokens": 64})
        samples.append((time.perf_counter() - started) / 100)
    return statistics.median(samples) * 1e6


def run(mode: str, steps: int, turns: int) -> dict[str, float]:
    if mode in ("off", "export"):
        telemetry.telemetry_setup()
    if mode == "export":
        telemetry.exporter_add(Drop(), batch=True)
    per_turn = statistics.median(governed(turns)) * 1e6
    result = {"step_us": per_step(steps), "turn_us": per_turn}
    telemetry.force_flush()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--mode", choices=["api", "off", "export"])
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run(args.mode, args.steps, args.turns)))
        return
    results = {}
    for mode in ("api", "off", "export"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--mode",
                mode,
                "--steps",
                str(args.steps),
                "--turns",
                str(args.turns),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
    base = results["api"]["turn_us"]
    for mode, r in results.items():
        print(
            f"{mode:7s} step span {r['step_us']:6.1f} µs   3-step turn {r['turn_us']:8.1f} µs  "
            f"(+{r['turn_us'] - base:6.1f} µs over the no-op API, "
            f"{(r['turn_us'] - base) / 9:5.1f} µs per span)"
        )


if __name__ == "__main__":
    main()
