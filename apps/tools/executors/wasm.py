"""Untrusted tools in a wasmtime WASI sandbox.

Protocol: the tool's arguments go in as JSON on stdin; the module writes one JSON value to stdout
and exits 0. A non-zero exit is a tool failure (stderr says why).

Isolation, per call (a fresh store and instance every time, nothing shared between calls):
- time: an epoch deadline driven by a 10 ms ticker thread caps wall-clock time at
  `tool.timeout_s`; an optional fuel budget caps executed instructions deterministically.
  Either one traps the module → ToolTimeout (`wasm_time_limit` / `wasm_fuel_exhausted`), not
  retried: the same input would hit the same cap.
- memory: store limits cap linear memory; `memory.grow` beyond the cap fails. A module that then
  aborts → ToolFailed `wasm_memory_limit`.
- filesystem: none, unless a directory is granted with a `Preopen` (read-only by default).
  WASI has no ambient filesystem: without a preopen there is nothing to resolve a path against.
- network: none. WASI preview 1 cannot open sockets, and no socket is ever handed in.
- environment: empty (the worker's environment is never inherited).
The wasm code runs in the calling thread; traps are Python exceptions, so the worker survives.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime

from .base import (
    CallContext,
    ToolDefinition,
    ToolError,
    ToolFailed,
    ToolOutcome,
    ToolOutputInvalid,
    ToolTimeout,
)

MIB = 1024 * 1024
MODULES_DIR = Path(__file__).resolve().parent.parent / "wasm_modules"
_UNLIMITED_FUEL = 2**63 - 1
_MAX_STDERR_BYTES = 8 * 1024
_MAX_MESSAGE = 1000


@dataclass(frozen=True)
class Preopen:
    """A host directory granted to the module at `guest_path` (WASI fd 3, 4, ...)."""

    host_path: str
    guest_path: str = "/data"
    writable: bool = False


@dataclass(frozen=True)
class WasmModuleSpec:
    """Where a module is and what it may use.

    `sha256` pins the module's bytes: a module that changed since it was approved is refused.
    `fuel` is an instruction budget (roughly one unit per wasm instruction); None leaves only
    the wall-clock cap. `credential_env` names the environment variable that receives the
    per-call credential; None (the default) means the module never sees one.
    """

    path: str | Path
    sha256: str | None = None
    memory_limit_bytes: int = 64 * MIB
    fuel: int | None = None
    preopens: tuple[Preopen, ...] = ()
    max_output_bytes: int = 1 * MIB
    credential_env: str | None = None


@dataclass(frozen=True)
class WasmRun:
    exit_code: int
    stdout: bytes
    stderr: bytes
    output_overflow: bool


class _FifoSink:
    """Collects one WASI output stream through a named pipe, keeping the first `limit` bytes.

    Why not `WasiConfig.stdout_custom`: wasmtime performs WASI writes (and drops the stream) on
    its tokio worker threads, so a Python callback can be entered while the interpreter is
    shutting down, which aborts the process. A regular file would need no callback but lets a
    module fill the disk before its time cap stops it. The pipe is drained by a Python thread
    that discards past the limit, so the module never blocks on a full pipe either (a module
    blocked in a host call cannot be interrupted by its epoch deadline).
    """

    def __init__(self, path: str, limit: int):
        self.path = path
        self.limit = limit
        self.data = bytearray()
        self.total = 0
        os.mkfifo(path, 0o600)
        # Our end opens first and non-blocking, so wasmtime's open for writing does not wait.
        self._fd: int | None = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._drain, name="warden-wasm-output", daemon=True)

    def start(self) -> None:
        """Start draining; call once wasmtime holds the write end (else EOF comes at once)."""
        assert self._fd is not None
        os.set_blocking(self._fd, True)
        self._thread.start()

    def _drain(self) -> None:
        fd = self._fd
        assert fd is not None
        try:
            while chunk := os.read(fd, 65536):
                self.total += len(chunk)
                room = self.limit - len(self.data)
                if room > 0:
                    self.data += chunk[:room]
        finally:
            os.close(fd)

    def finish(self, timeout_s: float = 2.0) -> None:
        """Wait for end-of-file, which comes once the store holding the write end is gone."""
        if self._thread.ident is not None:
            self._thread.join(timeout_s)  # the drain thread closes its end at EOF
        elif self._fd is not None:
            os.close(self._fd)
        self._fd = None

    @property
    def overflow(self) -> bool:
        return self.total > self.limit


class _EpochTicker:
    """Advances the engine's epoch every `tick_s` while any call is running."""

    def __init__(self, engine: wasmtime.Engine, tick_s: float):
        self._engine = engine
        self.tick_s = tick_s
        self._active = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextmanager
    def running(self) -> Iterator[None]:
        with self._cond:
            self._active += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="warden-wasm-epoch", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._active == 0:
                    self._cond.wait()
            time.sleep(self.tick_s)
            self._engine.increment_epoch()


class WasmSandbox:
    """A wasmtime engine configured for caps, its epoch ticker and a compiled-module cache."""

    def __init__(self, *, tick_s: float = 0.01):
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        self.engine = wasmtime.Engine(config)
        self._ticker = _EpochTicker(self.engine, tick_s)
        self._modules: dict[str, wasmtime.Module] = {}
        self._lock = threading.Lock()

    def module(self, spec: WasmModuleSpec) -> wasmtime.Module:
        try:
            data = Path(spec.path).read_bytes()
        except OSError as exc:
            raise ToolFailed(
                f"cannot read WASM module {spec.path}: {exc}", code="wasm_module_missing"
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        if spec.sha256 is not None and digest != spec.sha256.lower():
            raise ToolFailed(
                f"WASM module {spec.path} changed since it was approved (sha256 {digest})",
                code="wasm_module_changed",
            )
        with self._lock:
            module = self._modules.get(digest)
            if module is None:
                try:
                    # Text format compiles directly; binary modules start with "\0asm".
                    source: str | bytes = data if data.startswith(b"\0asm") else data.decode()
                    module = wasmtime.Module(self.engine, source)
                except (wasmtime.WasmtimeError, UnicodeDecodeError) as exc:
                    raise ToolFailed(
                        f"invalid WASM module {spec.path}: {_first_line(exc)}",
                        code="wasm_invalid_module",
                    ) from None
                self._modules[digest] = module
            return module

    def run(
        self,
        spec: WasmModuleSpec,
        stdin: bytes,
        *,
        timeout_s: float,
        program: str = "tool",
        env: Mapping[str, str] | None = None,
    ) -> WasmRun:
        """Run the module's `_start` once. Raises ToolTimeout / ToolFailed at a cap."""
        module = self.module(spec)
        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=spec.memory_limit_bytes, instances=1)
        store.set_fuel(spec.fuel if spec.fuel is not None else _UNLIMITED_FUEL)
        wasi = wasmtime.WasiConfig()
        wasi.argv = [program]
        wasi.env = list((env or {}).items())
        for grant in spec.preopens:
            wasi.preopen_dir(grant.host_path, grant.guest_path, grant.writable)
        workdir = tempfile.mkdtemp(prefix="warden-wasm-")
        sinks: list[_FifoSink] = []
        instance: wasmtime.Instance | None = None
        try:
            # WASI reads stdin from a file only; a private directory holds this call's input.
            stdin_path = os.path.join(workdir, "stdin")
            with open(stdin_path, "wb") as f:
                f.write(stdin)
            wasi.stdin_file = stdin_path
            stdout = _FifoSink(os.path.join(workdir, "stdout"), spec.max_output_bytes)
            sinks.append(stdout)
            wasi.stdout_file = stdout.path
            stdout.start()
            stderr = _FifoSink(os.path.join(workdir, "stderr"), _MAX_STDERR_BYTES)
            sinks.append(stderr)
            wasi.stderr_file = stderr.path
            stderr.start()
            store.set_wasi(wasi)
            linker = wasmtime.Linker(self.engine)
            linker.define_wasi()
            exit_code = 0
            with self._ticker.running():
                store.set_epoch_deadline(math.ceil(timeout_s / self._ticker.tick_s) + 1)
                try:
                    instance = linker.instantiate(store, module)
                    start = instance.exports(store).get("_start")
                    if not isinstance(start, wasmtime.Func):
                        raise ToolFailed(
                            "the module exports no _start function", code="wasm_no_start"
                        )
                    start(store)
                except wasmtime.ExitTrap as exc:
                    exit_code = exc.code
                except wasmtime.Trap as exc:
                    raise _classify_trap(exc, store, instance, spec, timeout_s) from None
                except wasmtime.WasmtimeError as exc:
                    raise _classify_setup_error(exc, spec) from None
        finally:
            # Dropping the store closes the pipes' write ends, which ends the drain threads.
            instance = None
            store.close()
            wasi.close()  # a no-op once set_wasi took it; closes the files if not
            for sink in sinks:
                sink.finish()
            shutil.rmtree(workdir, ignore_errors=True)
        return WasmRun(exit_code, bytes(stdout.data), bytes(stderr.data), stdout.overflow)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:_MAX_MESSAGE]


def _memory_bytes(store: wasmtime.Store, instance: wasmtime.Instance | None) -> int | None:
    if instance is None:
        return None
    memory = instance.exports(store).get("memory")
    return memory.data_len(store) if isinstance(memory, wasmtime.Memory) else None


def _classify_trap(
    exc: wasmtime.Trap,
    store: wasmtime.Store,
    instance: wasmtime.Instance | None,
    spec: WasmModuleSpec,
    timeout_s: float,
) -> ToolError:
    code = exc.trap_code
    if code == wasmtime.TrapCode.INTERRUPT:
        return ToolTimeout(
            f"the module was stopped at its {timeout_s:g}s time cap",
            code="wasm_time_limit",
            retryable=False,
        )
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return ToolTimeout(
            f"the module used up its fuel budget ({spec.fuel} units)",
            code="wasm_fuel_exhausted",
            retryable=False,
        )
    # The C API exposes no hook for a refused memory.grow, so infer it: a module that aborts
    # with its memory over half the cap was, in practice, refused an allocation (allocators
    # grow by at most doubling, so the refused request started above the halfway mark).
    used = _memory_bytes(store, instance)
    if used is not None and used * 2 >= spec.memory_limit_bytes:
        return ToolFailed(
            f"the module was stopped at its memory cap: it aborted with {used / MIB:.1f} MiB "
            f"of its {spec.memory_limit_bytes / MIB:g} MiB in use, after more was refused",
            code="wasm_memory_limit",
        )
    return ToolFailed(f"the module trapped: {_first_line(exc)}", code="wasm_trap")


def _classify_setup_error(exc: wasmtime.WasmtimeError, spec: WasmModuleSpec) -> ToolError:
    message = _first_line(exc)
    if "memory" in message and "limit" in message:
        return ToolFailed(
            f"the module needs more memory than its {spec.memory_limit_bytes / MIB:g} MiB cap",
            code="wasm_memory_limit",
        )
    if "import" in message:
        return ToolFailed(
            f"the module imports something the sandbox does not provide: {message}",
            code="wasm_link_error",
        )
    return ToolFailed(f"the module could not start: {message}", code="wasm_instantiate_failed")


class WasmExecutor:
    """Runs WASM tools. `modules` maps `ToolDefinition.server` to the module's spec."""

    def __init__(
        self,
        modules: Mapping[str, WasmModuleSpec] | Callable[[str], WasmModuleSpec],
        *,
        sandbox: WasmSandbox | None = None,
    ):
        self._modules = modules
        self._sandbox = sandbox

    @property
    def sandbox(self) -> WasmSandbox:
        return self._sandbox or default_sandbox()

    def _spec(self, name: str) -> WasmModuleSpec:
        try:
            if callable(self._modules):
                return self._modules(name)
            return self._modules[name]
        except (KeyError, LookupError):
            raise ToolFailed(
                f"no WASM module {name!r} is registered", code="unknown_module"
            ) from None

    def execute(
        self, tool: ToolDefinition, arguments: Mapping[str, Any], *, ctx: CallContext
    ) -> ToolOutcome:
        spec = self._spec(tool.server)
        env = {}
        if spec.credential_env and ctx.credential:
            env[spec.credential_env] = ctx.credential
        run = self.sandbox.run(
            spec,
            json.dumps(dict(arguments), ensure_ascii=False).encode(),
            timeout_s=tool.timeout_s,
            program=tool.call_name,
            env=env,
        )
        if run.exit_code != 0:
            detail = (run.stderr or run.stdout).decode("utf-8", errors="replace").strip()
            raise ToolFailed(
                f"the module exited with status {run.exit_code}: {detail[:_MAX_MESSAGE]}",
                code="wasm_exit",
            )
        if run.output_overflow:
            raise ToolOutputInvalid(
                f"the module wrote more than {spec.max_output_bytes} bytes to stdout",
                code="wasm_output_too_large",
            )
        try:
            content = json.loads(run.stdout)
        except ValueError:
            preview = run.stdout[:200].decode("utf-8", errors="replace")
            raise ToolOutputInvalid(
                f"the module's stdout is not JSON: {preview!r}", code="wasm_output_not_json"
            ) from None
        return ToolOutcome(ok=True, content=content)


# ---------------------------------------------------------------------------------------------
# Shipped modules and the process-wide sandbox


def shipped_module(name: str, **settings: Any) -> WasmModuleSpec:
    """A module from apps/tools/wasm_modules (a built .wasm wins over the .wat source)."""
    for suffix in (".wasm", ".wat"):
        path = MODULES_DIR / f"{name}{suffix}"
        if path.exists():
            return WasmModuleSpec(path=path, **settings)
    raise LookupError(f"no shipped WASM module {name!r} in {MODULES_DIR}")


WORD_COUNT_TOOL = ToolDefinition(
    name="word_count",
    description="Count the words in a text (runs of non-whitespace). Runs in the WASM sandbox.",
    input_schema={
        "type": "object",
        "properties": {"text": {"type": "string", "description": "The text to count."}},
        "required": ["text"],
        "additionalProperties": False,
    },
    output_schema={
        "type": "object",
        "properties": {"words": {"type": "integer", "minimum": 0}},
        "required": ["words"],
    },
    source="wasm",
    server="word_count",
    risk_tier="low",
    idempotent=True,
    timeout_s=2.0,
)

_default_sandbox: WasmSandbox | None = None
_default_sandbox_lock = threading.Lock()


def default_sandbox() -> WasmSandbox:
    global _default_sandbox
    with _default_sandbox_lock:
        if _default_sandbox is None:
            _default_sandbox = WasmSandbox()
        return _default_sandbox


def _forget_default_sandbox_in_child() -> None:
    # The ticker thread and its condition do not survive a fork; start over in the child.
    global _default_sandbox
    _default_sandbox = None


os.register_at_fork(after_in_child=_forget_default_sandbox_in_child)
