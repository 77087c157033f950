"""Policy decision latency through `RegoEngine.evaluate`, warm.

Run: `.venv/bin/python benchmarks/bench_policy.py [decisions]`. Times what the gate pays per
policy per tool call, after a warm-up (helper started, policy compiled), and prints
p50/p99/max for:

- the shipped default policy, which the engine evaluates in the calling thread;
- the same policy one comment longer, which (like any tenant's edit) goes to a helper process:
  a pipe round trip and a query of the compiled bundle there;
- a generated 50-rule policy, in a helper.

No Django, no database. Goal: p99 ≤ 1 ms. Also times the raw regopy bundle query in this
process, for comparison. The warm loop keeps the helper hot: inside a turn the helper wakes from
idle for each decision, which costs more (README "Policies").
"""

from __future__ import annotations

import copy
import gc
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.policies.defaults import DEFAULT_POLICY_SOURCE, SAMPLE_INPUT
from apps.policies.engines.base import PolicyModule
from apps.policies.engines.rego import RegoEngine, runs_in_process

ENTRY = "data.warden.decision"


def fifty_rule_policy() -> str:
    """50 deny rules over tools, arguments, roles and budget, combined into one decision."""
    lines = ["package warden", "", "import rego.v1", ""]
    for n in range(50):
        kind = n % 5
        if kind == 0:
            body = f'input.tool.name == "blocked_tool_{n}"'
        elif kind == 1:
            body = f'startswith(input.arguments.path, "/forbidden/{n}/")'
        elif kind == 2:
            body = f'"banned_role_{n}" in input.user.roles'
        elif kind == 3:
            body = f"input.budget.fraction_used > {1 + n / 100}"
        else:
            body = f'input.session.data_sensitivity == "secret_{n}"'
        lines += [f'deny contains "rule {n}" if {{', f"\t{body}", "}", ""]
    lines += [
        "decision := {",
        '\t"allow": count(deny) == 0,',
        '\t"require_approval": input.tool.risk_tier == "high",',
        '\t"reasons": sort([r | some r in deny]),',
        '\t"obligations": [],',
        "}",
    ]
    return "\n".join(lines) + "\n"


def timed(engine: RegoEngine, policy: PolicyModule, decisions: int) -> list[float]:
    doc = copy.deepcopy(SAMPLE_INPUT)
    doc["arguments"] = {"path": "/tmp/x"}
    for _ in range(200):  # warm-up: helper started, bundle compiled, caches hot
        engine.evaluate(policy, doc)
    samples = []
    gc.disable()
    try:
        for n in range(decisions):
            doc["budget"]["tokens_used"] = n
            started = time.perf_counter()
            engine.evaluate(policy, doc)
            samples.append((time.perf_counter() - started) * 1e6)
    finally:
        gc.enable()
    return samples


def report(label: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    print(f"{label:<36} p50 {p50:7.0f} µs   p99 {p99:7.0f} µs   max {ordered[-1]:7.0f} µs")


def raw_query_us(source: str, decisions: int) -> float:
    import regopy
    from regopy import rego_shared

    builder = regopy.Interpreter()
    builder.add_module("policy.rego", source)
    bundle = builder.build(None, ["warden/decision"])
    query = regopy.Interpreter()
    text = json.dumps(SAMPLE_INPUT)
    started = time.perf_counter()
    for _ in range(decisions):
        query.set_input_term(text)
        output = rego_shared.rego_bundle_query_entrypoint(
            query._impl, bundle._impl, "warden/decision"
        )
        rego_shared.rego_free_output(output)
    return (time.perf_counter() - started) / decisions * 1e6


def main(decisions: int) -> None:
    engine = RegoEngine(helpers=1, timeout_s=5.0)
    try:
        for label, source in (
            ("default policy (in-process)", DEFAULT_POLICY_SOURCE),
            ("default + a comment (helper)", DEFAULT_POLICY_SOURCE + "# edited\n"),
            ("50-rule policy (helper)", fifty_rule_policy()),
        ):
            policy = PolicyModule(source=source, entry_point=ENTRY)
            assert runs_in_process(policy) == (source == DEFAULT_POLICY_SOURCE)
            engine.check(policy, sample_input=SAMPLE_INPUT)
            report(label, timed(engine, policy, decisions))
            print(f"{'  (bundle query alone)':<36} mean {raw_query_us(source, 2000):5.0f} µs")
        print(f"compilations: {engine.compilations} (a check and then never again per version)")
    finally:
        engine.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
