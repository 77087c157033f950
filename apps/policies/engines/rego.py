"""Rego with regopy (rego-cpp): tenants' policies in warm helper processes that a timeout
kills; the shipped default policy in the calling thread.

rego-cpp cannot be interrupted: a policy that runs too long (a huge comprehension, say) would
hold whatever thread called it for as long as it likes. So, like the cpu-bound builtins
(apps/tools/executors/cpu.py), compilation and evaluation run in helper processes — started as
`python -I -c <bootstrap>`, kept warm, one request at a time over stdin/stdout — and the parent
SIGKILLs a helper that overruns, starts a replacement, and reports `EngineTimeout` (the caller
denies). While it waits, the parent also kills a helper whose resident memory passes
`memory_limit_bytes` (an address-space rlimit is no option: rego-cpp's allocator reserves
hundreds of GiB up front), and each helper arms RLIMIT_CPU per request as a backstop should
the parent itself hang.

Compile once: a helper keeps the bundle of every module it compiled, keyed by the module's
digest; an evaluation names the key, and a helper that has not seen it yet answers "unknown",
gets the source once, and compiles it. A warm evaluation is one pipe round trip plus a bundle
query.

The shipped default policy (apps/policies/defaults.py, every tenant's until they edit it)
skips the helper, because it needs no kill switch: it is our code, reviewed and tested with
each release, and bounded — one `else` chain of comparisons and a `sprintf` of the tool's name,
no iteration, no recursion — so it costs time and memory in proportion to the input document,
which the caller built. A module is that policy when its key is the shipped one's and its source
and entry point are the shipped ones too (a key is whatever the caller passed: the database's
digest). It is evaluated in the calling thread by the helper's own `Compiler` (the same answers,
the same errors), on a bundle compiled once per thread per engine: a regopy interpreter holds its
input and a bundle is converted on its first query, so neither may be shared between threads.
That saves the pipe round trip and the helper's wake-up (benchmarks/bench_policy.py). The price:
rego-cpp loads into this process with the first such decision (~35 ms once, ~15-20 MiB resident
and 256 GiB of reserved address space, so no RLIMIT_AS may be set on a process that uses this
engine), and each thread that evaluates it compiles it once (~4 ms, under 1 MiB). Everything
else goes to the helpers: any edit of the default however small, an older edition of it, every
other policy, and every `check`.

Thread-safe: in-process evaluations run side by side (each thread has its own interpreter, and
ctypes lets go of the GIL while rego-cpp runs); at most `helpers` helper requests run at once,
others wait for a free helper.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

from ..defaults import DEFAULT_ENTRY_POINT, DEFAULT_POLICY_SOURCE
from .base import (
    EngineError,
    EngineTimeout,
    Evaluation,
    PolicyCompileError,
    PolicyModule,
    check_entry_point,
)
from .rego_helper import Compiler

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT_BYTES = 512 * 1024 * 1024
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# An interpreter and regopy's shared library start in ~0.3 s on an idle machine; a loaded CI
# machine can take much longer. Start-up never counts against a policy's time limit.
STARTUP_TIMEOUT_S = 60.0
_WATCH_S = 0.02
_PAGE = os.sysconf("SC_PAGE_SIZE")
_PASSED_ENV = {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"}
_BOOTSTRAP = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
    "from apps.policies.engines.rego_helper import serve; serve(json.loads(sys.argv[2]))"
)
# The one module evaluated in the calling thread (see the module's docstring).
SHIPPED_DEFAULT = PolicyModule(source=DEFAULT_POLICY_SOURCE, entry_point=DEFAULT_ENTRY_POINT)


def runs_in_process(module: PolicyModule) -> bool:
    """Whether `module` is exactly the shipped default policy (its key, source and entry point)."""
    return (
        module.key == SHIPPED_DEFAULT.key
        and module.source == SHIPPED_DEFAULT.source
        and module.entry_point == SHIPPED_DEFAULT.entry_point
    )


class _HelperGone(Exception):
    pass


class _Helper:
    """One helper process, its pipes, and what it has read but not yet returned."""

    def __init__(self, argv: list[str], *, memory_limit_bytes: int = 0) -> None:
        self.memory_limit_bytes = memory_limit_bytes
        # The worker's environment holds secrets (database URL, keys) a policy never needs.
        env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, close_fds=True, env=env
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin: IO[bytes] = self.proc.stdin
        self._stdout_fd = self.proc.stdout.fileno()
        self._buffer = bytearray()
        self.ready = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self) -> None:
        if self.ready:
            return
        answer = self._read(time.monotonic() + STARTUP_TIMEOUT_S)
        if not answer or not answer.get("ready"):
            raise _HelperGone("the policy helper did not start")
        self.ready = True

    def call(self, request: Mapping[str, Any], deadline: float) -> dict[str, Any] | None:
        """The answer, or None when `deadline` passed first; _HelperGone if it died."""
        self.wait_ready()
        try:
            self._stdin.write(json.dumps(request).encode() + b"\n")
            self._stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise _HelperGone("the policy helper is gone") from exc
        return self._read(deadline)

    def _read(self, deadline: float) -> dict[str, Any] | None:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            # A warm answer comes within the first slice; a slow one is watched as it runs.
            ready, _, _ = select.select([self._stdout_fd], [], [], min(remaining, _WATCH_S))
            if not ready:
                if self.memory_limit_bytes and _resident_bytes(self.pid) > self.memory_limit_bytes:
                    self.kill()
                    raise _HelperGone(
                        f"the policy helper used more than {self.memory_limit_bytes >> 20} MiB"
                    )
                continue
            chunk = os.read(self._stdout_fd, 65536)
            if not chunk:
                raise _HelperGone(f"the policy helper exited ({self.proc.wait()})")
            self._buffer += chunk
            if len(self._buffer) > MAX_RESPONSE_BYTES:
                raise _HelperGone("the policy helper's answer is too large")
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return dict(json.loads(line))

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def _resident_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class RegoEngine:
    """The default engine: Rego evaluated by regopy in this machine's helper processes."""

    name = "rego"

    def __init__(
        self,
        *,
        helpers: int = 2,
        timeout_s: float = 1.0,
        compile_timeout_s: float = 10.0,
        memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
        python: str = sys.executable,
    ) -> None:
        if helpers < 1:
            raise ValueError("helpers must be at least 1")
        self.timeout_s, self.compile_timeout_s = timeout_s, compile_timeout_s
        self._slots = threading.BoundedSemaphore(helpers)
        self._idle: list[_Helper] = []
        self._busy: set[_Helper] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._memory_limit_bytes = memory_limit_bytes
        self._python = python
        # Each thread's Compiler for the shipped default policy, made on its first evaluation.
        self._local = threading.local()
        # Versions compiled by this engine's helpers so far (each helper compiles a digest once).
        self.compilations = 0

    # ------------------------------------------------------------------ the interface

    def check(self, module: PolicyModule, *, sample_input: Mapping[str, Any]) -> None:
        check_entry_point(module)
        with self._helper() as helper:
            answer = self._request(helper, self._compile_request(module, sample_input))
        if "compile_error" in answer:
            raise PolicyCompileError(**answer["compile_error"])

    def evaluates_in_process(self, module: PolicyModule) -> bool:
        return runs_in_process(module)

    def evaluate(self, module: PolicyModule, input_doc: Mapping[str, Any]) -> Evaluation:
        request = {
            "op": "eval",
            "key": module.key,
            "entry": module.entry_point,
            "input": input_doc,
            "timeout_s": self.timeout_s,
        }
        if runs_in_process(module):
            answer = self._evaluate_here(request)
        else:
            answer = self._evaluate_in_helper(module, request)
        if "compile_error" in answer:
            error = PolicyCompileError(**answer["compile_error"])
            raise EngineError(f"the policy does not compile: {error}")
        if "error" in answer:
            raise EngineError(str(answer["error"]))
        return Evaluation(
            value=answer.get("value"), defined=bool(answer.get("defined")), engine=self.name
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            helpers, self._idle = [*self._idle, *self._busy], []
            self._busy.clear()
        for helper in helpers:
            helper.kill()

    def warm(self) -> None:
        """Start one helper now if none is idle (takes the start-up off the first decision)."""
        with self._lock:
            if self._idle or self._closed:
                return
            self._idle.append(self._start())

    def helper_pids(self) -> list[int]:
        with self._lock:
            return [h.pid for h in [*self._idle, *self._busy] if h.alive()]

    # ------------------------------------------------------------------ evaluations

    def _evaluate_in_helper(self, module: PolicyModule, request: dict[str, Any]) -> dict[str, Any]:
        with self._helper() as helper:
            answer = self._request(helper, request)
            if answer.get("unknown"):
                compiled = self._request(helper, self._compile_request(module, None))
                if "compile_error" in compiled:
                    return compiled
                answer = self._request(helper, request)
        return answer

    def _evaluate_here(self, request: dict[str, Any]) -> dict[str, Any]:
        """The shipped default policy's answer, computed in this thread as a helper would."""
        try:
            compiler: Compiler | None = getattr(self._local, "compiler", None)
            if compiler is None:
                compiler = Compiler()
                compiled = compiler.compile(self._compile_request(SHIPPED_DEFAULT, None))
                if "compile_error" in compiled:
                    return compiled
                self._local.compiler = compiler
            return compiler.evaluate(request)
        # What a helper answers when its Compiler raises (rego_helper.serve).
        except MemoryError:
            return {"error": "the policy engine ran out of memory"}
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    # ------------------------------------------------------------------ requests

    def _compile_request(
        self, module: PolicyModule, sample_input: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "op": "compile",
            "key": module.key,
            "source": module.source,
            "entry": module.entry_point,
            "timeout_s": self.compile_timeout_s,
        }
        if sample_input is not None:
            request["sample"] = dict(sample_input)
        return request

    def _request(self, helper: _Helper, request: dict[str, Any]) -> dict[str, Any]:
        compiling = request["op"] == "compile"
        if compiling:
            self.compilations += 1
        limit = self.compile_timeout_s if compiling else self.timeout_s
        try:
            helper.wait_ready()
            answer = helper.call(request, time.monotonic() + limit)
        except _HelperGone as exc:
            self._replace(helper)
            raise EngineError(f"the policy engine stopped unexpectedly ({exc})") from None
        if answer is None:
            self._replace(helper)
            what = "compiling the policy" if compiling else "evaluating the policy"
            logger.warning("policy engine: %s overran %gs; helper killed", what, limit)
            raise EngineTimeout(f"{what} took longer than {limit:g}s and was stopped")
        return answer

    # ------------------------------------------------------------------ helpers' lifecycle

    @contextmanager
    def _helper(self) -> Iterator[_Helper]:
        # A free helper is normally there at once; waiting longer than a few evaluation
        # timeouts means every helper is busy with slow policies: deny rather than queue on.
        if not self._slots.acquire(timeout=max(5.0, 5 * self.timeout_s)):
            raise EngineError("every policy helper stayed busy")
        try:
            helper = self._checkout()
            try:
                yield helper
            finally:
                self._checkin(helper)
        finally:
            self._slots.release()

    def _start(self) -> _Helper:
        path = [entry or os.getcwd() for entry in sys.path]
        return _Helper(
            [self._python, "-I", "-c", _BOOTSTRAP, json.dumps(path), "{}"],
            memory_limit_bytes=self._memory_limit_bytes,
        )

    def _checkout(self) -> _Helper:
        with self._lock:
            if self._closed:
                raise EngineError("the policy engine is shut down")
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
            if helper not in self._busy:  # replaced meanwhile
                return
            self._busy.discard(helper)
            if not self._closed and helper.alive():
                self._idle.append(helper)
                return
        helper.kill()

    def _replace(self, helper: _Helper) -> None:
        """Kill a helper that overran or died; a fresh one starts for the next request."""
        helper.kill()
        with self._lock:
            self._busy.discard(helper)
            if not self._closed:
                self._idle.append(self._start())
