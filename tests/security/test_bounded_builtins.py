"""CPU-bound builtins are bounded: the calculator refuses bombs before computing them, and a
cpu-bound builtin that overruns its timeout is killed, leaving the process free.

Real executors and real helper processes; the guarded executor is the one tool calls go
through (validation, retries, breaker).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from apps.tools.builtins import load_builtins
from apps.tools.executors.base import CallContext, ToolDefinition
from apps.tools.executors.builtin import BuiltinCall, BuiltinExecutor, BuiltinRegistry
from apps.tools.executors.wrapper import GuardedExecutor, breaker_key

# Expressions that held the GIL for seconds to minutes (and grabbed gigabytes) before the fix:
# nested powers, towers of exponents, products of huge factors.
_F = "((10**100)**100)**100"
BOMBS = [
    "9**9**9**9",  # the tower the issue names
    "(((10**100)**100)**100)**100",  # nested powers: minutes of one C call
    "((((9**99)**99)**99)**99)",
    "((((2**99)**99)**99)**99)**99",
    "(((99**99)**99)**99)**9",
    "*".join([_F] * 8),  # a product of huge factors
]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; it is dead all the same (and means nobody reaped it).
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"


@pytest.fixture
def ctx() -> CallContext:
    return CallContext(tenant_id="tenant-a", session_id="s", turn_id="t", idempotency_key="t:0")


@pytest.fixture
def builtins() -> Iterator[tuple[GuardedExecutor, BuiltinExecutor, BuiltinRegistry]]:
    registry = load_builtins()
    executor = BuiltinExecutor(registry)
    # No backoff waits: a retry, if any happened, is counted in `attempts` anyway.
    yield GuardedExecutor({"builtin": executor}, sleep=lambda s: None), executor, registry
    executor.shutdown()


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive()}


@pytest.mark.parametrize("expression", BOMBS)
def test_calculator_bombs_are_refused_and_the_next_call_works(
    builtins: tuple[GuardedExecutor, BuiltinExecutor, BuiltinRegistry],
    ctx: CallContext,
    expression: str,
) -> None:
    guarded, _, registry = builtins
    calculator = registry.get("calculator").definition()
    threads = _threads()

    bomb = guarded.execute(calculator, {"expression": expression}, ctx=ctx)

    assert not bomb.ok
    assert bomb.error_code == "calculation_too_large", bomb.error_message
    assert bomb.attempts == 1  # refused, not retried
    assert "calculation_too_large" in bomb.model_text  # the model is told why
    # Nothing of the bomb keeps running here: no thread was left behind.
    assert _threads() <= threads
    ok = guarded.execute(calculator, {"expression": "(2 + 3) * 4"}, ctx=ctx)
    assert ok.ok and ok.content == {"expression": "(2 + 3) * 4", "value": 20}


@pytest.mark.parametrize(
    ("expression", "code"),
    [
        ("1+" * 60 + "1", "arguments_invalid"),  # too many terms
        ("-" * 150 + "1", "arguments_invalid"),
        ("2.0 ** 100000", "calculation_too_large"),  # float overflow
        ("1e308 * 10", "calculation_too_large"),  # inf
        ("(-8) ** 0.5", "not_a_real_number"),  # complex
        ("1 / 0", "division_by_zero"),
    ],
)
def test_calculator_inputs_outside_its_bounds_get_a_clear_error(
    builtins: tuple[GuardedExecutor, BuiltinExecutor, BuiltinRegistry],
    ctx: CallContext,
    expression: str,
    code: str,
) -> None:
    guarded, _, registry = builtins
    outcome = guarded.execute(
        registry.get("calculator").definition(), {"expression": expression}, ctx=ctx
    )
    assert (outcome.ok, outcome.error_code, outcome.attempts) == (False, code, 1)


def test_calculator_still_computes_big_but_bounded_numbers(
    builtins: tuple[GuardedExecutor, BuiltinExecutor, BuiltinRegistry], ctx: CallContext
) -> None:
    guarded, _, registry = builtins
    outcome = guarded.execute(
        registry.get("calculator").definition(), {"expression": "2**8000 - 1"}, ctx=ctx
    )
    assert outcome.ok and outcome.content["value"] == 2**8000 - 1


def test_a_cpu_bound_builtin_that_overruns_is_killed_and_not_retried(
    builtins: tuple[GuardedExecutor, BuiltinExecutor, BuiltinRegistry],
    ctx: CallContext,
    tmp_path: Path,
) -> None:
    guarded, executor, registry = builtins
    burn = registry.get("burn_cpu").definition()  # tests.agents.tools: computes forever
    assert burn.idempotent  # so a timeout used to be retried (three times the damage)
    short = ToolDefinition(**{**burn.__dict__, "timeout_s": 1.0})
    marker = tmp_path / "pid"
    threads = _threads()

    outcome = guarded.execute(short, {"path": str(marker)}, ctx=ctx)

    assert (outcome.ok, outcome.error_code, outcome.attempts) == (False, "timeout", 1)
    assert "stopped" in outcome.model_text
    (burner,) = map(int, marker.read_text().split())  # one run: not retried
    assert burner != os.getpid()  # it ran in a helper, not on one of our threads...
    assert not _alive(burner)  # ...which is gone: killed and reaped
    assert _threads() <= threads
    assert burner not in executor.cpu.helper_pids()
    # The slot is free and a helper is warm: the next cpu-bound call runs at once.
    calculator = registry.get("calculator").definition()
    assert guarded.execute(calculator, {"expression": "6 * 7"}, ctx=ctx).content["value"] == 42
    # The stopped call was the arguments' fault, not the server's: the breaker stays closed.
    assert guarded.breakers.state(breaker_key(short, tenant_id=ctx.tenant_id)) == "closed"


def test_shutdown_leaves_no_helper_running(ctx: CallContext) -> None:
    registry = load_builtins()
    executor = BuiltinExecutor(registry)
    guarded = GuardedExecutor({"builtin": executor}, sleep=lambda s: None)
    calculator = registry.get("calculator").definition()
    assert guarded.execute(calculator, {"expression": "1 + 1"}, ctx=ctx).ok
    (helper,) = executor.cpu.helper_pids()
    executor.shutdown()
    assert not _alive(helper)


def environment_names(arguments: Mapping[str, Any], call: BuiltinCall) -> list[str]:
    return sorted(os.environ)


def test_the_helper_sees_none_of_the_workers_secrets(
    ctx: CallContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DJANGO_SECRET_KEY", "worker-secret")
    registry = BuiltinRegistry()
    registry.register("env", environment_names, description="", input_schema={}, cpu_bound=True)
    executor = BuiltinExecutor(registry)
    try:
        outcome = GuardedExecutor({"builtin": executor}).execute(
            registry.get("env").definition(), {}, ctx=ctx
        )
    finally:
        executor.shutdown()
    assert outcome.ok, outcome.error_message
    assert "DJANGO_SECRET_KEY" not in outcome.content
    assert not any(name.endswith(("_URL", "_KEY")) for name in outcome.content)
