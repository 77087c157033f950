"""Per-event cost of redaction (apps/core/redaction.py) for the events a turn writes.

Run: `.venv/bin/python benchmarks/bench_redaction.py [--rounds 2000]`.

No Django, no services: it times `Redactor.payload` on the payloads the loop emits (shapes
copied from apps/agents/runtime/loop.py) — clean ones (the common case) and ones carrying
PII — with the built-in kinds, and with a tenant configuration holding 3 custom patterns.
Prints the median and p95 per event in microseconds, and the mean over a whole turn's
events. Goal (issue 8: governance ≤ 10 ms per step): ≲ 100-200 µs for a typical event.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.core.redaction import CustomPattern, RedactionConfig, Redactor

LOREM = (
    "The repository has 3 open pull requests; the last build on main passed in 4m12s. "
    "Tests: 1,284 passed, 2 skipped. Coverage 87.5% (up 0.4). Next release v2.14.0 on "
    "2026-12-01 at 09:00 UTC, tracked in issue #4821. "
)

CLEAN: dict[str, dict[str, Any]] = {
    "turn.started": {"attempt": 1, "worker": "celery@host-3", "model_tier": "standard"},
    "model.called": {
        "node_id": "9f1c2e7a-0d2b-4d9e-9a51-5b7f8e0c1d22:s0",
        "step_index": 0,
        "attempt": 1,
        "endpoint": "openai-main",
        "model": "gpt-4.1-mini",
        "input_tokens": 1834,
        "output_tokens": 212,
        "cost": "0.000873",
        "usage_estimated": False,
        "latency_ms": 812,
    },
    "step.rationale": {
        "node_id": "9f1c2e7a-0d2b-4d9e-9a51-5b7f8e0c1d22:s0",
        "step_index": 0,
        "rationale": "I will look up the build status and open pull requests for the repo.",
    },
    "tool.call": {
        "node_id": "9f1c2e7a-0d2b-4d9e-9a51-5b7f8e0c1d22:s0:c0",
        "tool": "github.search_issues",
        "arguments": {"repo": "acme/warden", "query": "is:open is:pr label:release", "limit": 20},
        "rerun": False,
    },
    "tool.result": {
        "node_id": "9f1c2e7a-0d2b-4d9e-9a51-5b7f8e0c1d22:s0:c0",
        "tool": "github.search_issues",
        "ok": True,
        "status": "completed",
        "output": {"text": LOREM * 3, "items": [{"number": 4821, "title": "Release v2.14"}]},
        "error": None,
        "latency_ms": 143,
    },
    "turn.completed": {
        "final_answer": LOREM,
        "input_tokens": 3921,
        "output_tokens": 388,
        "cost": "0.00172",
    },
}

WITH_PII: dict[str, dict[str, Any]] = {
    "tool.call": {
        "node_id": "9f1c2e7a-0d2b-4d9e-9a51-5b7f8e0c1d22:s1:c0",
        "tool": "crm.update_contact",
        "arguments": {
            "email": "jane.doe@example.com",
            "phone": "+44 20 7946 0958",
            "note": "Paid with 4111 1111 1111 1111, refund to DE89 3704 0044 0532 0130 00.",
            "headers": {"Authorization": "Bearer sk-proj-abcdefghijklmnopqrstuvwxyz0123"},
        },
        "rerun": False,
    },
    "tool.result": {
        "node_id": "9f1c2e7a-0d2b-4d9e-9a51-5b7f8e0c1d22:s1:c0",
        "tool": "crm.update_contact",
        "ok": True,
        "status": "completed",
        "output": {
            "text": LOREM + "Contact jane.doe@example.com, SSN 123-45-6789, updated. " + LOREM,
        },
        "error": None,
        "latency_ms": 96,
    },
}

CUSTOM = RedactionConfig(
    custom=(
        CustomPattern("employee_id", r"EMP-\d{6}"),
        CustomPattern("project", r"PRJ-[A-Z]{3}-\d{4}"),
        CustomPattern("internal_host", r"\b[a-z0-9-]+\.corp\.acme\.internal\b"),
    )
)


def measure(redactor: Redactor, payload: dict[str, Any], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        redactor.payload(payload)
        samples.append((time.perf_counter() - t0) * 1e6)
    return samples


def report(name: str, samples: list[float]) -> None:
    samples.sort()
    p50 = statistics.median(samples)
    p95 = samples[int(len(samples) * 0.95) - 1]
    print(f"  {name:<28} p50 {p50:7.1f} µs   p95 {p95:7.1f} µs")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    for label, redactor in (
        ("built-in kinds", Redactor()),
        ("+ 3 custom patterns", Redactor(CUSTOM)),
    ):
        print(f"{label}:")
        turn: list[float] = []
        for group, payloads in (("clean", CLEAN), ("pii", WITH_PII)):
            for event, payload in payloads.items():
                measure(redactor, payload, 50)  # warm up
                samples = measure(redactor, payload, args.rounds)
                report(f"{event} ({group})", samples)
                if group == "clean":
                    turn.append(statistics.median(samples))
        print(f"  mean over a clean turn's events: {statistics.mean(turn):.1f} µs/event")


if __name__ == "__main__":
    main()
