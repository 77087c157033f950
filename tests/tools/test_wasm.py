"""The WASM sandbox: shipped modules in wasmtime with time, memory and filesystem caps."""

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from apps.tools.executors.base import ToolDefinition
from apps.tools.executors.wasm import (
    MIB,
    WORD_COUNT_TOOL,
    Preopen,
    WasmExecutor,
    WasmModuleSpec,
    WasmSandbox,
    shipped_module,
)
from apps.tools.executors.wrapper import GuardedExecutor

ANY_INPUT = {"type": "object"}


@pytest.fixture(scope="module")
def sandbox() -> WasmSandbox:
    return WasmSandbox()


def run(sandbox, sleeps, ctx, spec: WasmModuleSpec, arguments, **tool_settings):
    definition = ToolDefinition(
        name="probe",
        description="",
        input_schema=ANY_INPUT,
        source="wasm",
        server="module",
        idempotent=True,
        timeout_s=2.0,
    )
    definition = replace(definition, **tool_settings)
    executor = WasmExecutor({"module": spec}, sandbox=sandbox)
    return GuardedExecutor({"wasm": executor}, sleep=sleeps).execute(definition, arguments, ctx=ctx)


def wat_module(tmp_path: Path, name: str, source: str, **settings) -> WasmModuleSpec:
    path = tmp_path / f"{name}.wat"
    path.write_text(source)
    return WasmModuleSpec(path=path, **settings)


@pytest.mark.parametrize(
    "text",
    [
        "the quick brown fox",
        "  leading and trailing  ",
        "tabs\tand\nnew\r\nlines",
        "",
        'quotes "inside" and back\\slashes',
        "héllo wörld ☃ naïve café",
    ],
)
def test_word_count_module_returns_json(sandbox, sleeps, ctx, text):
    executor = WasmExecutor({"word_count": shipped_module("word_count")}, sandbox=sandbox)
    outcome = GuardedExecutor({"wasm": executor}, sleep=sleeps).execute(
        WORD_COUNT_TOOL, {"text": text}, ctx=ctx
    )
    assert outcome.ok, outcome.error_message
    assert outcome.content == {"words": len(text.split())}
    assert outcome.model_text == f'{{"words":{len(text.split())}}}'


def test_word_count_handles_input_larger_than_its_initial_memory(sandbox, sleeps, ctx):
    text = "lorem ipsum dolor " * 20_000  # 360 KB: the module must grow its memory to read it
    outcome = run(sandbox, sleeps, ctx, shipped_module("word_count"), {"text": text})
    assert outcome.content == {"words": 60_000}


def test_infinite_loop_is_stopped_at_the_time_cap(sandbox, sleeps, ctx):
    outcome = run(sandbox, sleeps, ctx, shipped_module("infinite_loop"), {}, timeout_s=0.2)
    assert (outcome.ok, outcome.error_code) == (False, "wasm_time_limit")
    # Deterministic: the same input would loop again, so even an idempotent tool is not retried.
    assert outcome.attempts == 1 and sleeps.delays == []


def test_infinite_loop_is_stopped_by_its_fuel_budget(sandbox, sleeps, ctx):
    spec = shipped_module("infinite_loop", fuel=5_000_000)
    outcome = run(sandbox, sleeps, ctx, spec, {}, timeout_s=30)
    assert outcome.error_code == "wasm_fuel_exhausted"


def test_memory_bomb_is_stopped_at_the_memory_cap_and_the_worker_carries_on(sandbox, sleeps, ctx):
    spec = shipped_module("memory_bomb", memory_limit_bytes=32 * MIB)
    outcome = run(sandbox, sleeps, ctx, spec, {})
    assert (outcome.ok, outcome.error_code) == (False, "wasm_memory_limit")
    assert "32 MiB" in outcome.error_message
    # The same process keeps serving tools.
    after = run(sandbox, sleeps, ctx, shipped_module("word_count"), {"text": "still alive"})
    assert after.content == {"words": 2}


def test_no_filesystem_without_a_grant(sandbox, sleeps, ctx, tmp_path):
    (tmp_path / "secret.txt").write_text("top secret")
    outcome = run(sandbox, sleeps, ctx, shipped_module("fs_probe"), {"path": "secret.txt"})
    assert outcome.content == {"opened": False, "errno": 8}  # EBADF: there is no directory


def test_granted_directory_is_readable_and_cannot_be_escaped(sandbox, sleeps, ctx, tmp_path):
    granted = tmp_path / "granted"
    granted.mkdir()
    (granted / "notes.txt").write_text("meeting at noon")
    (tmp_path / "secret.txt").write_text("top secret")
    spec = shipped_module("fs_probe", preopens=(Preopen(str(granted)),))

    inside = run(sandbox, sleeps, ctx, spec, {"path": "notes.txt"})
    assert inside.content == {"opened": True, "content": "meeting at noon"}
    for escape in ("../secret.txt", str(tmp_path / "secret.txt")):
        outside = run(sandbox, sleeps, ctx, spec, {"path": escape})
        assert outside.content["opened"] is False, escape


def test_module_exit_status_is_a_tool_failure_with_its_message(sandbox, sleeps, ctx):
    outcome = run(sandbox, sleeps, ctx, shipped_module("word_count"), {"words": "no text key"})
    assert outcome.error_code == "wasm_exit"
    assert 'string field "text"' in outcome.error_message


def test_changed_module_is_refused(sandbox, sleeps, ctx, tmp_path):
    source = shipped_module("word_count").path
    approved = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    copy = tmp_path / "word_count.wat"
    copy.write_text(Path(source).read_text())
    spec = WasmModuleSpec(path=copy, sha256=approved)
    assert run(sandbox, sleeps, ctx, spec, {"text": "a b"}).content == {"words": 2}
    copy.write_text(Path(source).read_text().replace("(i32.const 32)", "(i32.const 33)"))
    assert run(sandbox, sleeps, ctx, spec, {"text": "a b"}).error_code == "wasm_module_changed"


WRITE_PRELUDE = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") {pages})
"""


def test_output_that_is_not_json_is_rejected(sandbox, sleeps, ctx, tmp_path):
    spec = wat_module(
        tmp_path,
        "hello",
        WRITE_PRELUDE.format(pages=1)
        + """  (data (i32.const 16) "hello")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 5))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))""",
    )
    outcome = run(sandbox, sleeps, ctx, spec, {})
    assert outcome.error_code == "wasm_output_not_json" and "hello" in outcome.error_message


def test_output_beyond_its_cap_is_rejected(sandbox, sleeps, ctx, tmp_path):
    # 64 writes of 64 KiB = 4 MiB of output against a 1 MiB cap.
    spec = wat_module(
        tmp_path,
        "chatty",
        WRITE_PRELUDE.format(pages=2)
        + """  (func (export "_start") (local $i i32)
    (i32.store (i32.const 0) (i32.const 65536)) (i32.store (i32.const 4) (i32.const 65536))
    (loop $more
      (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 64))))))""",
        max_output_bytes=1 * MIB,
    )
    outcome = run(sandbox, sleeps, ctx, spec, {})
    assert outcome.error_code == "wasm_output_too_large"


def test_module_needing_more_memory_than_its_cap_does_not_start(sandbox, sleeps, ctx, tmp_path):
    spec = wat_module(
        tmp_path,
        "big",
        '(module (memory (export "memory") 64) (func (export "_start")))',
        memory_limit_bytes=1 * MIB,
    )
    assert run(sandbox, sleeps, ctx, spec, {}).error_code == "wasm_memory_limit"


def test_module_importing_host_functions_beyond_wasi_does_not_start(sandbox, sleeps, ctx, tmp_path):
    spec = wat_module(
        tmp_path,
        "sockets",
        '(module (import "env" "connect" (func)) (func (export "_start")))',
    )
    assert run(sandbox, sleeps, ctx, spec, {}).error_code == "wasm_link_error"
