"""The helper process of the regopy engine: compiles and evaluates with regopy.

Started by `RegoEngine` as `python -I -c <bootstrap>`; one JSON request line in, one JSON
response line out, until stdin closes. It keeps the compiled bundles of the modules it was sent
(an LRU keyed by `PolicyModule.key`), so a version is compiled once per helper and every later
evaluation is a bundle query.

`Compiler` also serves the shipped default policy in the engine's own process (one per thread;
see rego.py), so that policy gets the same answers and errors there as here.

Requests and answers:
    {"op": "compile", "key", "source", "entry", "sample"?}
        → {"ok": true} | {"compile_error": {"message", "line", "column"}}
    {"op": "eval", "key", "entry", "input"}
        → {"ok": true, "defined", "value"} | {"unknown": true} | {"error": "..."}
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import signal
import sys
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

MAX_BUNDLES = 512
_ERROR_AT = re.compile(r"\(error \d+:[^|\n]*\|(\d+)\|(\d+)")
_ERRORMSG = re.compile(r"\(errormsg (\d+):")


def error_message(text: str) -> str:
    """The first `errormsg` of a rego-cpp error tree (its value is length-prefixed)."""
    match = _ERRORMSG.search(text)
    if match is None:
        return text.strip()[:500]
    start = match.end()
    return text[start : start + int(match.group(1))]


def error_offset(text: str) -> int | None:
    match = _ERROR_AT.search(text)
    return int(match.group(1)) if match else None


class Compiler:
    """Compiles modules into bundles and queries them; one thread at a time."""

    def __init__(self) -> None:
        import regopy

        self.regopy = regopy
        from regopy import rego_shared

        self.shared = rego_shared
        self.bundles: OrderedDict[str, Any] = OrderedDict()
        self.query = self._interpreter()

    def _interpreter(self) -> Any:
        interpreter = self.regopy.Interpreter()
        # rego-cpp prints errors to stdout unless told not to; they come back to us anyway.
        interpreter.log_level = self.regopy.LogLevel.NONE
        return interpreter

    def compile(self, request: Mapping[str, Any]) -> dict[str, Any]:
        from apps.policies.engines.base import locate, position

        source = str(request["source"])
        entry = _slashed(str(request["entry"]))
        builder = self._interpreter()
        try:
            builder.add_module("policy.rego", source)
            bundle = builder.build(None, [entry])
        except self.regopy.RegoError as exc:
            text = str(exc)
            offset = error_offset(text)
            line, column = position(source, offset) if offset is not None else (None, None)
            return {
                "compile_error": {"message": error_message(text), "line": line, "column": column}
            }
        if "sample" in request:
            outcome = self._query(bundle, entry, request["sample"])
            if "error" in outcome:
                message = outcome["error"]
                line, column = None, None
                unknown = re.match(r"Function not found: (\S+)", message)
                if unknown:
                    line, column = locate(source, unknown.group(1) + "(")
                return {"compile_error": {"message": message, "line": line, "column": column}}
        self.bundles[str(request["key"])] = bundle
        while len(self.bundles) > MAX_BUNDLES:
            self.bundles.popitem(last=False)
        return {"ok": True}

    def evaluate(self, request: Mapping[str, Any]) -> dict[str, Any]:
        key = str(request["key"])
        bundle = self.bundles.get(key)
        if bundle is None:
            return {"unknown": True}
        self.bundles.move_to_end(key)
        return self._query(bundle, _slashed(str(request["entry"])), request["input"])

    def _query(self, bundle: Any, entry: str, input_doc: Any) -> dict[str, Any]:
        shared = self.shared
        try:
            # As JSON text, parsed by rego-cpp: slower than building it through the C API
            # (regopy.Input), but that path has 64-bit integers (a larger one silently becomes
            # 0) and strings that compare differently with escapes in a policy's literals.
            # Non-ASCII characters go as themselves: rego-cpp compares strings as written, so
            # "é" in a policy would not equal an input's "\u00e9".
            self.query.set_input_term(json.dumps(input_doc, allow_nan=False, ensure_ascii=False))
            output = shared.rego_bundle_query_entrypoint(self.query._impl, bundle._impl, entry)
        except (self.regopy.RegoError, ValueError, TypeError) as exc:
            return {"error": error_message(str(exc))}
        try:
            ok = shared.rego_output_ok(output)
            text = shared.rego_output_string(output)
        finally:
            shared.rego_free_output(output)
        if not ok:
            # rego-cpp gives no message for these (a conflict between rule values, say).
            return {
                "error": "the policy failed to evaluate (conflicting values or a runtime error)"
            }
        if text.lstrip().startswith("("):
            return {"error": error_message(text)}
        if text.strip() == "undefined":
            return {"ok": True, "defined": False, "value": None}
        parsed = json.loads(text)
        if isinstance(parsed, dict) and parsed.get("expressions"):
            return {"ok": True, "defined": True, "value": parsed["expressions"][0]}
        return {"error": f"unexpected engine output: {text[:200]}"}


def _slashed(entry_point: str) -> str:
    """data.warden.decision → warden/decision (how rego-cpp names a bundle entry point)."""
    return "/".join(entry_point.split(".")[1:])


def serve(options: Mapping[str, Any]) -> None:  # pragma: no cover - runs in the helper
    # The protocol owns the real stdout; anything else printed goes to stderr.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # No RLIMIT_AS: rego-cpp's allocator (snmalloc) reserves hundreds of GiB of address space
    # up front and aborts under any cap on it; the parent watches our resident memory instead.
    compiler = Compiler()
    out.write(b'{"ready": true}\n')
    for line in sys.stdin.buffer:
        request = json.loads(line)
        _arm_cpu_limit(float(request.get("timeout_s", 10.0)))
        try:
            if request.get("op") == "compile":
                response = compiler.compile(request)
            else:
                response = compiler.evaluate(request)
        except MemoryError:
            response = {"error": "the policy engine ran out of memory"}
        except Exception as exc:
            response = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(response).encode() + b"\n")


def _arm_cpu_limit(timeout_s: float) -> None:  # pragma: no cover - runs in the helper
    # A backstop should the parent not kill us: the kernel does, past this call's CPU time.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(used) + math.ceil(timeout_s) + 2
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
