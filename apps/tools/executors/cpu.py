"""CPU-bound builtins run in helper processes that a timeout kills.

Python cannot stop a thread: a builtin that computes (rather than waits) and overruns its
timeout would keep the GIL, and with it the whole worker process, for as long as it likes. So a
builtin registered with `cpu_bound=True` runs in a helper: a separate interpreter started as
`python -I -c <bootstrap>`, kept warm, serving one call at a time over its stdin/stdout (one
JSON line in, one JSON line out).

    runner = CpuBoundRunner(max_helpers=2)
    content = runner.run(function, arguments, ctx=ctx, timeout_s=5.0, name="calculator")
    runner.close()                                  # run() raises ToolError like any builtin

On timeout the parent SIGKILLs the helper and reaps it (so nothing of the call is left running,
and no thread of the parent waits on it), then starts a replacement so the next call finds a
warm helper. Such a timeout raises a non-retryable `ToolTimeout`: the same arguments would burn
the same CPU again, so retrying would only multiply the damage. A helper that dies mid-call
(out of memory, say) is replaced too, and the call fails with `builtin_crashed`.

The helper gets a minimal environment (none of the worker's secrets). Backstops in the helper,
should the parent itself die or hang: it exits when its stdin closes, each call arms
RLIMIT_CPU for the call's timeout (the kernel kills it past that), and its address space is
capped (`memory_limit_bytes`).

A cpu-bound function is passed to the helper by reference (`module:qualname`), so it must be a
module-level function in a module that imports without Django set up; its arguments and
result cross as JSON. `report_progress` is a no-op inside the helper.

Overhead, measured on the 2-core dev machine: a warm call (calculator "6 * 7") takes about
70 µs, 40 µs more than on a thread; a helper starts in about 0.25 s (an interpreter plus the
tool's module), paid by the first cpu-bound call of a worker process and after each kill.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import IO, Any, NoReturn

from .base import (
    CallContext,
    ToolArgumentsInvalid,
    ToolError,
    ToolFailed,
    ToolOutputInvalid,
    ToolTimeout,
    ToolUnavailable,
)

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT_BYTES = 512 * 1024 * 1024
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
_ERRORS: dict[str, type[ToolError]] = {
    cls.__name__: cls
    for cls in (ToolArgumentsInvalid, ToolFailed, ToolOutputInvalid, ToolTimeout, ToolUnavailable)
}
_PASSED_ENV = {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"}
_BOOTSTRAP = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
    "from apps.tools.executors.builtin import BuiltinCall; "
    "from apps.tools.executors.cpu import serve; serve(json.loads(sys.argv[2]), BuiltinCall)"
)


def function_reference(function: Callable[..., Any]) -> str:
    """`module:qualname` of a module-level function; ValueError for lambdas and closures."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", "")
    if not module or not qualname or "<" in qualname:
        raise ValueError(
            f"a cpu-bound builtin must be a module-level function, not {function!r}: "
            "it runs in a helper process that imports it by name"
        )
    return f"{module}:{qualname}"


class _HelperGone(Exception):
    pass


class _Helper:
    """One helper process and its pipes."""

    def __init__(self, argv: list[str]) -> None:
        # stderr is inherited: a helper's traceback belongs in the worker's log. The
        # environment is not: the worker's holds secrets (database URL, keys) a computation
        # never needs.
        env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            close_fds=True,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin: IO[bytes] = self.proc.stdin
        self._stdout_fd = self.proc.stdout.fileno()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, request: bytes, deadline: float) -> dict[str, Any] | None:
        """The helper's answer, or None when `deadline` passed first. _HelperGone if it died."""
        try:
            self._stdin.write(request + b"\n")
            self._stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise _HelperGone("the helper is gone") from exc
        buffer = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._stdout_fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(self._stdout_fd, 65536)
            if not chunk:
                raise _HelperGone(f"the helper exited ({self.proc.wait()})")
            buffer += chunk
            if buffer.endswith(b"\n"):
                return dict(json.loads(buffer))
            if len(buffer) > MAX_RESPONSE_BYTES:
                raise ToolOutputInvalid(
                    f"the result is larger than {MAX_RESPONSE_BYTES} bytes", code="output_too_large"
                )

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


class CpuBoundRunner:
    """Warm helper processes for cpu-bound builtins: at most `max_helpers` calls at once.

    Thread-safe. `preload` names modules each new helper imports before its first call (the
    modules of the registered cpu-bound builtins), so a call does not pay for the import.
    """

    def __init__(
        self,
        *,
        max_helpers: int = 2,
        memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
        preload: Callable[[], Iterable[str]] = tuple,
        python: str = sys.executable,
    ) -> None:
        if max_helpers < 1:
            raise ValueError("max_helpers must be at least 1")
        self._slots = threading.BoundedSemaphore(max_helpers)
        self._idle: list[_Helper] = []
        self._busy: set[_Helper] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._memory_limit_bytes = memory_limit_bytes
        self._preload = preload
        self._python = python

    def helper_pids(self) -> list[int]:
        """Pids of the running helpers, idle or busy."""
        with self._lock:
            return [h.pid for h in [*self._idle, *self._busy] if h.alive()]

    def run(
        self,
        function: Callable[..., Any],
        arguments: Mapping[str, Any],
        *,
        ctx: CallContext,
        timeout_s: float,
        name: str,
    ) -> Any:
        """Call `function(arguments, BuiltinCall(ctx, timeout_s))` in a helper."""
        deadline = time.monotonic() + timeout_s
        request = json.dumps(
            {
                "function": function_reference(function),
                "arguments": dict(arguments),
                "timeout_s": timeout_s,
                "ctx": {
                    f.name: getattr(ctx, f.name)
                    for f in fields(ctx)
                    if f.name != "credential_factory"
                },
            }
        ).encode()
        if not self._slots.acquire(timeout=timeout_s):
            raise ToolUnavailable(
                f"{name}: every cpu-bound helper of this worker stayed busy for {timeout_s:g}s",
                code="cpu_helpers_busy",
                maybe_executed=False,
            )
        try:
            helper = self._checkout()
            try:
                response = helper.call(request, deadline)
            except _HelperGone as exc:
                self._discard(helper, replace=True)
                raise ToolFailed(
                    f"{name} stopped unexpectedly ({exc}); it may have run out of memory",
                    code="builtin_crashed",
                ) from None
            except ToolError:
                self._discard(helper, replace=True)
                raise
            if response is None:
                self._discard(helper, replace=True)
                logger.warning("cpu-bound builtin %s overran %gs; helper killed", name, timeout_s)
                raise ToolTimeout(
                    f"{name} did not finish within {timeout_s:g}s and was stopped",
                    retryable=False,
                )
            self._checkin(helper)
        finally:
            self._slots.release()
        if response.get("ok"):
            return response.get("content")
        _raise(response.get("error") or {})

    def warm(self) -> None:
        """Start one idle helper now if there is none (to take the start-up off a call)."""
        with self._lock:
            if self._idle or self._closed:
                return
            self._idle.append(self._start())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            helpers, self._idle = [*self._idle, *self._busy], []
            self._busy.clear()
        for helper in helpers:
            helper.kill()

    # ------------------------------------------------------------------ helpers' lifecycle

    def _start(self) -> _Helper:
        path = [entry or os.getcwd() for entry in sys.path]
        options = {
            "preload": sorted(set(self._preload())),
            "memory_limit_bytes": self._memory_limit_bytes,
        }
        return _Helper(
            [self._python, "-I", "-c", _BOOTSTRAP, json.dumps(path), json.dumps(options)]
        )

    def _checkout(self) -> _Helper:
        with self._lock:
            if self._closed:
                raise ToolUnavailable("the builtin executor is shut down", maybe_executed=False)
            stale: list[_Helper] = []
            helper = None
            while self._idle:
                candidate = self._idle.pop()
                if candidate.alive():
                    helper = candidate
                    break
                stale.append(candidate)
            if helper is None:
                helper = self._start()
            self._busy.add(helper)
        for dead in stale:
            dead.kill()
        return helper

    def _checkin(self, helper: _Helper) -> None:
        with self._lock:
            self._busy.discard(helper)
            if not self._closed:
                self._idle.append(helper)
                return
        helper.kill()

    def _discard(self, helper: _Helper, *, replace: bool) -> None:
        helper.kill()
        with self._lock:
            self._busy.discard(helper)
            if replace and not self._closed:
                # Killed and replaced: the next call finds a helper already starting up.
                self._idle.append(self._start())


def _raise(error: Mapping[str, Any]) -> NoReturn:
    kind = str(error.get("kind", ""))
    message = str(error.get("message", "the builtin failed"))
    cls = _ERRORS.get(kind)
    if cls is None:
        raise ToolFailed(message, code="builtin_error")
    code, retryable = error.get("code"), error.get("retryable")
    if cls is ToolUnavailable:
        raise ToolUnavailable(
            message,
            code=code,
            retryable=retryable,
            maybe_executed=bool(error.get("maybe_executed", True)),
        )
    raise cls(message, code=code, retryable=retryable)


# ---------------------------------------------------------------------------------------------
# The helper's side


def serve(
    options: Mapping[str, Any], make_call: Callable[[CallContext, float], Any]
) -> None:  # pragma: no cover - runs in the helper
    """The helper's main loop: one request line in, one response line out, until stdin closes.
    `make_call(ctx, timeout_s)` builds the builtin's second argument (a BuiltinCall)."""
    # The protocol owns the real stdout; a builtin's print() goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit = int(options.get("memory_limit_bytes") or 0)
    if limit > 0:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    for module in options.get("preload", []):
        try:
            importlib.import_module(module)
        except Exception as exc:  # reported per call instead, as builtin_error
            print(f"cpu helper: cannot preload {module}: {exc}", file=sys.stderr)
    for line in sys.stdin.buffer:
        request = json.loads(line)
        _arm_cpu_limit(float(request["timeout_s"]))
        response = _handle(request, make_call)
        try:
            data = json.dumps(response, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            data = json.dumps(
                {"ok": False, "error": _error(ToolOutputInvalid(f"not JSON-serialisable: {exc}"))}
            ).encode()
        out.write(data + b"\n")


def _arm_cpu_limit(timeout_s: float) -> None:  # pragma: no cover - runs in the helper
    # RLIMIT_CPU counts the process's whole life: allow what it used so far plus this call.
    # Only the soft limit moves (SIGXCPU kills us); a lowered hard limit could never be raised.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(used) + math.ceil(timeout_s) + 2
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _handle(
    request: Mapping[str, Any], make_call: Callable[[CallContext, float], Any]
) -> dict[str, Any]:  # pragma: no cover - runs in the helper
    try:
        module_name, _, qualname = str(request["function"]).partition(":")
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
        call = make_call(CallContext(**request["ctx"]), float(request["timeout_s"]))
        return {"ok": True, "content": target(request["arguments"], call)}
    except ToolError as exc:
        return {"ok": False, "error": _error(exc)}
    except MemoryError:
        return {
            "ok": False,
            "error": _error(ToolFailed("the builtin ran out of memory", code="out_of_memory")),
        }
    except Exception as exc:
        return {"ok": False, "error": {"kind": "", "message": f"{type(exc).__name__}: {exc}"}}


def _error(exc: ToolError) -> dict[str, Any]:
    kind = type(exc).__name__
    if kind not in _ERRORS:  # a subclass: send the nearest class the parent knows
        known = [c.__name__ for c in type(exc).__mro__ if c.__name__ in _ERRORS]
        kind = known[0] if known else ToolFailed.__name__
    return {
        "kind": kind,
        "code": exc.code,
        "message": exc.message,
        "retryable": exc.retryable,
        "maybe_executed": getattr(exc, "maybe_executed", True),
    }
