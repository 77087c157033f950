"""Router overhead: `ModelRouter.complete` vs calling the provider directly.

Run: `.venv/bin/python benchmarks/bench_llm_router.py [calls]`. Uses the scripted
model, so it measures routing (eligibility, breaker bookkeeping, response copy),
not a model.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.llm.providers.base import EndpointConfig
from apps.llm.providers.scripted import ScriptedProvider
from apps.llm.router import ModelRouter
from apps.llm.types import Message, ModelRequest


def per_call_us(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main(calls: int) -> None:
    script = {"script": [{"final": "ok"}]}
    endpoints = [
        EndpointConfig(name=f"ep{i}", kind="scripted", model="s", tier="large", options=script)
        for i in range(5)
    ] + [
        EndpointConfig(
            name="answer",
            kind="scripted",
            model="s",
            options=script,
            allowed_sensitivities={"confidential"},
        )
    ]
    request = ModelRequest(messages=(Message("system", "sys"), Message("user", "hello")))
    provider = ScriptedProvider(endpoints[-1])
    router = ModelRouter(endpoints)

    direct = per_call_us(lambda: provider.complete(request), calls)
    routed = per_call_us(
        lambda: router.complete(request, tier="small", sensitivity="confidential"), calls
    )
    print(f"calls={calls}")
    print(f"provider.complete   {direct:8.1f} us/call")
    print(f"router.complete     {routed:8.1f} us/call  (overhead {routed - direct:.1f} us)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
