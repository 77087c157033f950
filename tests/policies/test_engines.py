"""The engines on their own (no Django): compile errors with positions, compile once, the
evaluation timeout and a dead helper (both fail closed), the shipped default policy in the
calling thread (and nothing else), and the result shape."""

from __future__ import annotations

import copy
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from apps.policies.defaults import DEFAULT_POLICY_SOURCE, SAMPLE_INPUT
from apps.policies.engines.base import (
    EngineError,
    EngineTimeout,
    PolicyCompileError,
    PolicyModule,
)
from apps.policies.engines.decision import PolicyResult, combine, result_from
from apps.policies.engines.rego import SHIPPED_DEFAULT, RegoEngine

ENTRY = "data.warden.decision"
ALLOW_IF_A = 'package warden\nimport rego.v1\n\ndecision := {"allow": input.a == 1}\n'
# 25 million iterations in little memory: many seconds of rego-cpp, far past any timeout here.
RUNAWAY = (
    "package warden\nimport rego.v1\n\n"
    'decision := {"allow": count({1 | some x in numbers.range(1, 5000); '
    "some y in numbers.range(1, 5000)}) > 0}\n"
)
# Builds a 30-million-element array: gigabytes.
HOG = (
    "package warden\nimport rego.v1\n\n"
    "big := [x | some x in numbers.range(1, 30000000)]\n"
    'decision := {"allow": count(big) > 0}\n'
)


def module(source: str, entry_point: str = ENTRY) -> PolicyModule:
    return PolicyModule(source=source, entry_point=entry_point)


def compile_error(engine: RegoEngine, source: str, entry_point: str = ENTRY) -> PolicyCompileError:
    with pytest.raises(PolicyCompileError) as caught:
        engine.check(module(source, entry_point), sample_input=SAMPLE_INPUT)
    return caught.value


def test_the_default_policy_compiles_and_evaluates(rego_engine: RegoEngine) -> None:
    rego_engine.check(module(DEFAULT_POLICY_SOURCE), sample_input=SAMPLE_INPUT)
    evaluation = rego_engine.evaluate(module(DEFAULT_POLICY_SOURCE), SAMPLE_INPUT)
    assert evaluation.defined
    assert evaluation.value == {
        "allow": True,
        "require_approval": False,
        "reasons": [],
        "obligations": [],
    }


def test_a_syntax_error_is_reported_with_the_compilers_line_and_column(
    rego_engine: RegoEngine,
) -> None:
    source = "package warden\nimport rego.v1\n\ndecision if { input.a ==  }\n"
    error = compile_error(rego_engine, source)
    assert (error.line, error.column) == (4, 23)
    assert "boolean operator" in error.message


def test_an_unclosed_object_is_reported_where_it_opens(rego_engine: RegoEngine) -> None:
    source = 'package warden\nimport rego.v1\n# é\ndecision := {"allow": true\n'
    error = compile_error(rego_engine, source)
    assert error.line == 4 and error.column == 13  # columns count characters, not bytes
    assert "unclosed" in error.message


def test_an_unknown_function_is_refused_where_it_is_called(rego_engine: RegoEngine) -> None:
    source = 'package warden\nimport rego.v1\n\ndecision := {"allow": true} if {\n  nope(1)\n}\n'
    error = compile_error(rego_engine, source)
    assert "nope" in error.message
    assert (error.line, error.column) == (5, 3)


@pytest.mark.parametrize(
    ("source", "entry_point", "message"),
    [
        ("decision := 1\n", ENTRY, "declares no package"),
        ('package other\ndecision := {"allow": true}\n', ENTRY, "not a rule of package"),
        ("package warden\nimport rego.v1\nx := 1\n", ENTRY, "is not defined"),
        ('package warden\ndecision := {"allow": true}\n', "warden.decision", "must look like"),
    ],
)
def test_a_module_without_its_entry_point_is_refused(
    rego_engine: RegoEngine, source: str, entry_point: str, message: str
) -> None:
    assert message in compile_error(rego_engine, source, entry_point).message


def test_a_version_is_compiled_once_and_reused() -> None:
    engine = RegoEngine(helpers=1)
    try:
        policy = module(ALLOW_IF_A)
        results = [engine.evaluate(policy, {"a": n % 2}).value for n in range(20)]
        assert results == [{"allow": n % 2 == 1} for n in range(20)]
        assert engine.compilations == 1
        # The same source and entry point is the same compiled code (every tenant's default).
        engine.evaluate(module(ALLOW_IF_A), {"a": 1})
        assert engine.compilations == 1
        engine.evaluate(module(ALLOW_IF_A.replace("== 1", "== 2")), {"a": 1})
        assert engine.compilations == 2
    finally:
        engine.close()


def test_a_runaway_policy_is_stopped_at_the_timeout_and_the_engine_goes_on() -> None:
    engine = RegoEngine(helpers=1, timeout_s=0.5)
    try:
        engine.evaluate(module(ALLOW_IF_A), {"a": 1})  # warm: the helper is up
        (before,) = engine.helper_pids()
        with pytest.raises(EngineTimeout, match=r"longer than 0\.5s and was stopped"):
            engine.evaluate(module(RUNAWAY), {})
        # The helper that ran it is gone (killed, not left computing); a fresh one serves.
        with pytest.raises(ProcessLookupError):
            os.kill(before, 0)
        assert engine.evaluate(module(ALLOW_IF_A), {"a": 1}).value == {"allow": True}
        assert before not in engine.helper_pids()
    finally:
        engine.close()


def test_a_policy_that_eats_memory_is_killed_and_denied() -> None:
    engine = RegoEngine(helpers=1, timeout_s=60.0, memory_limit_bytes=128 * 1024 * 1024)
    try:
        with pytest.raises(EngineError, match="used more than 128 MiB"):
            engine.evaluate(module(HOG), {})
        assert engine.evaluate(module(ALLOW_IF_A), {"a": 1}).value == {"allow": True}
    finally:
        engine.close()


def _proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (proc(5)); [] once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return []


def _cpu_ticks(pid: int) -> int:
    """The process's user plus system CPU time, in clock ticks."""
    fields = _proc_stat(pid)
    return int(fields[11]) + int(fields[12])


def _state(pid: int) -> str:
    return (_proc_stat(pid) or ["gone"])[0]


def test_a_helper_that_dies_during_a_decision_is_an_engine_error_and_is_replaced() -> None:
    engine = RegoEngine(helpers=1, timeout_s=60.0)
    try:
        engine.evaluate(module(ALLOW_IF_A), {"a": 1})
        (pid,) = engine.helper_pids()
        idle = _cpu_ticks(pid)

        def kill_once_it_works() -> None:
            # Killed only once it burns CPU on the runaway policy: mid-request, every time.
            deadline = time.monotonic() + 30
            while _cpu_ticks(pid) < idle + 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_once_it_works)
        killer.start()
        with pytest.raises(EngineError, match="stopped unexpectedly"):
            engine.evaluate(module(RUNAWAY), {})
        killer.join()
        assert engine.evaluate(module(ALLOW_IF_A), {"a": 1}).value == {"allow": True}
        assert pid not in engine.helper_pids()
    finally:
        engine.close()


def test_a_helper_that_died_while_idle_is_not_handed_out() -> None:
    engine = RegoEngine(helpers=1)
    try:
        engine.evaluate(module(ALLOW_IF_A), {"a": 1})
        (pid,) = engine.helper_pids()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _state(pid) not in ("Z", "gone") and time.monotonic() < deadline:
            time.sleep(0.01)
        # Checked before use: the decision goes to a fresh helper, not to an error.
        assert engine.evaluate(module(ALLOW_IF_A), {"a": 1}).value == {"allow": True}
        assert pid not in engine.helper_pids()
    finally:
        engine.close()


def test_a_runtime_error_is_an_engine_error(rego_engine: RegoEngine) -> None:
    conflicting = 'package warden\nimport rego.v1\ndecision := {"allow": true}\ndecision := 2\n'
    with pytest.raises(EngineError):
        rego_engine.evaluate(module(conflicting), {})


def test_undefined_is_reported_as_such(rego_engine: RegoEngine) -> None:
    source = 'package warden\nimport rego.v1\ndecision := {"allow": true} if input.a == 1\n'
    evaluation = rego_engine.evaluate(module(source), {"a": 2})
    assert evaluation.defined is False


# --------------------------------------------------------------------------- the shipped default

# The same policy one comment longer: to the engine, a tenant's edit like any other.
EDITED_DEFAULT = DEFAULT_POLICY_SOURCE + "# edited\n"


def default_input(
    tier: str = "low", env: str = "dev", used: int = 0, name: str = "sample"
) -> dict[str, Any]:
    doc = copy.deepcopy(SAMPLE_INPUT)
    doc["tool"]["risk_tier"], doc["tool"]["name"], doc["environment"] = tier, name, env
    doc["budget"]["tokens_used"] = used
    return doc


def decided(allow: bool, approval: bool = False, reason: str = "") -> dict[str, Any]:
    return {
        "allow": allow,
        "require_approval": approval,
        "reasons": [reason] if reason else [],
        "obligations": [],
    }


SPENT = "the session's token budget is spent"
# What the shipped default decides (README "The default policy"), input by input.
DEFAULT_DECISIONS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (copy.deepcopy(SAMPLE_INPUT), decided(True)),
    (default_input("critical"), decided(False, reason="tool sample is critical risk")),
    (default_input("high"), decided(True, True, "tool sample is high risk")),
    (
        default_input("medium", "prod"),
        decided(True, True, "tool sample is medium risk and this is prod"),
    ),
    (default_input("medium", "dev"), decided(True)),
    (default_input("low", "prod"), decided(True)),
    (default_input("extreme"), decided(False, reason="tool sample has an unknown risk tier")),
    (default_input("high", used=40000), decided(False, reason=SPENT)),
    (default_input("low", used=2**70), decided(False, reason=SPENT)),
    (
        default_input("critical", name='say "hi" é'),
        decided(False, reason='tool say "hi" é is critical risk'),
    ),
]


def test_the_default_policy_decides_in_process_as_a_helper_would() -> None:
    engine = RegoEngine(helpers=1)
    try:
        for input_doc, expected in DEFAULT_DECISIONS:
            here = engine.evaluate(module(DEFAULT_POLICY_SOURCE), input_doc)
            in_helper = engine.evaluate(module(EDITED_DEFAULT), input_doc)
            assert here == in_helper, input_doc
            assert (here.defined, here.value) == (True, expected)
        # A failure fails the same way (closed, with the same reason) on both paths.
        unencodable = default_input()
        unencodable["budget"]["fraction_used"] = float("nan")
        errors = []
        for source in (DEFAULT_POLICY_SOURCE, EDITED_DEFAULT):
            with pytest.raises(EngineError) as caught:
                engine.evaluate(module(source), unencodable)
            errors.append(str(caught.value))
        assert errors[0] == errors[1]
    finally:
        engine.close()


def test_the_default_policy_needs_no_helper() -> None:
    engine = RegoEngine(helpers=1)
    try:
        assert engine.evaluate(module(DEFAULT_POLICY_SOURCE), SAMPLE_INPUT).value == decided(True)
        assert engine.helper_pids() == [] and engine.compilations == 0
    finally:
        engine.close()
    # Even where no helper can start at all.
    helpless = RegoEngine(helpers=1, python="/bin/false")
    try:
        assert helpless.evaluate(module(DEFAULT_POLICY_SOURCE), SAMPLE_INPUT).defined
        with pytest.raises(EngineError, match="stopped unexpectedly"):
            helpless.evaluate(module(EDITED_DEFAULT), SAMPLE_INPUT)
    finally:
        helpless.close()


@pytest.mark.parametrize(
    "policy",
    [
        module(EDITED_DEFAULT),
        module(DEFAULT_POLICY_SOURCE.replace("\t", "    ", 1)),
        module(DEFAULT_POLICY_SOURCE, "data.warden.allowed"),
        # A digest that claims to be the default's does not make a source so.
        PolicyModule(source=EDITED_DEFAULT, entry_point=ENTRY, key=SHIPPED_DEFAULT.key),
    ],
    ids=["trailing-comment", "one-indent", "other-entry-point", "default-digest-other-source"],
)
def test_anything_but_the_exact_default_runs_in_a_helper(policy: PolicyModule) -> None:
    engine = RegoEngine(helpers=1)
    try:
        assert engine.evaluate(policy, SAMPLE_INPUT).defined
        (pid,) = engine.helper_pids()
        assert engine.compilations == 1
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(EngineError, match="stopped unexpectedly"):
            engine.evaluate(policy, SAMPLE_INPUT)
    finally:
        engine.close()


def test_a_runaway_policy_under_the_defaults_digest_is_still_stopped() -> None:
    engine = RegoEngine(helpers=1, timeout_s=0.5)
    try:
        impostor = PolicyModule(source=RUNAWAY, entry_point=ENTRY, key=SHIPPED_DEFAULT.key)
        with pytest.raises(EngineTimeout, match="was stopped"):
            engine.evaluate(impostor, {})
    finally:
        engine.close()


def test_threads_evaluating_the_default_policy_at_once_each_get_their_own_answer() -> None:
    engine = RegoEngine(helpers=1)
    threads = 8
    start = threading.Barrier(threads)

    def decide(offset: int) -> list[tuple[int, Any]]:
        start.wait()
        answers = []
        for n in range(150):
            index = (offset + n) % len(DEFAULT_DECISIONS)
            input_doc = DEFAULT_DECISIONS[index][0]
            answers.append((index, engine.evaluate(module(DEFAULT_POLICY_SOURCE), input_doc).value))
        return answers

    try:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(decide, range(threads)))
        for answers in results:
            assert len(answers) == 150
            for index, value in answers:
                assert value == DEFAULT_DECISIONS[index][1]
        assert engine.helper_pids() == []
    finally:
        engine.close()


# --------------------------------------------------------------------------- the result shape


@pytest.mark.parametrize(
    ("value", "defined", "problem"),
    [
        (None, False, "undefined"),
        (True, True, "not an object"),
        ({"require_approval": False}, True, '"allow" must be true or false'),
        ({"allow": "yes"}, True, '"allow" must be true or false'),
        ({"allow": True, "require_approval": 1}, True, '"require_approval"'),
        ({"allow": True, "reasons": "because"}, True, '"reasons" must be a list of strings'),
        ({"allow": True, "reasons": [1]}, True, '"reasons" must be a list of strings'),
        ({"allow": True, "obligations": {}}, True, '"obligations" must be a list'),
    ],
)
def test_a_wrong_shaped_result_is_a_deny_that_says_so(
    value: object, defined: bool, problem: str
) -> None:
    result = result_from(value, defined=defined, label="policy 'p' v1")
    assert result.outcome == "deny"
    (reason,) = result.reasons
    assert "policy 'p' v1 returned a malformed decision" in reason and problem in reason


def test_deny_beats_approval_beats_allow() -> None:
    allow = PolicyResult(allow=True, obligations=("log",))
    approve = PolicyResult(allow=True, require_approval=True, reasons=("risky",))
    deny = PolicyResult(allow=False, reasons=("forbidden",))
    assert combine([]).outcome == "allow"
    assert combine([allow]).outcome == "allow"
    assert combine([allow, approve]).as_dict() == {
        "outcome": "require_approval",
        "reasons": ["risky"],
        "obligations": ["log"],
    }
    assert combine([approve, deny, allow]).as_dict() == {
        "outcome": "deny",
        "reasons": ["forbidden"],
        "obligations": [],
    }
    # allow: false wins even if the same result asks for approval.
    assert PolicyResult(allow=False, require_approval=True).outcome == "deny"


def test_input_values_keep_their_meaning(rego_engine: RegoEngine) -> None:
    # A model-written argument beyond 64 bits, or with quotes and accents, must compare as
    # written: a rule that misses it could let a call through.
    source = (
        "package warden\nimport rego.v1\n\n"
        'decision := {"allow": input.n < 1000, "require_approval": input.s == "say \\"hi\\" é"}\n'
    )
    value = rego_engine.evaluate(module(source), {"n": 2**70, "s": 'say "hi" é'}).value
    assert value == {"allow": False, "require_approval": True}
