"""The one interface every policy engine implements, and what they share.

Framework-free (no Django): the in-process regopy engine and the OPA client run, and are
tested, without it. A policy is a Rego module plus the entry point to query
(`data.warden.decision`); an engine compiles it once per version and evaluates it against an
input document, returning the entry point's value (or "undefined").

Errors say what went wrong so the caller can deny and say why (fail closed):
`PolicyCompileError` (the source does not compile: message, line, column), `EngineTimeout`
(evaluation ran too long and was stopped), `EngineError` (anything else the engine could not
do: a crash, a runtime error, an unreachable OPA server).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_PACKAGE = re.compile(rf"^[ \t]*package[ \t]+({_IDENT}(?:\.{_IDENT})*)[ \t]*(?:#.*)?$", re.M)
_ENTRY_POINT = re.compile(rf"^data(?:\.{_IDENT})+$")


@dataclass(frozen=True)
class PolicyModule:
    """One policy version as an engine sees it.

    `key` is a digest of the entry point and the source: the compiled form is cached under it,
    so a version is compiled at most once per process (and two identical versions — every
    tenant's untouched default policy — share one compilation).
    """

    source: str
    entry_point: str
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            digest = hashlib.sha256(f"{self.entry_point}\0{self.source}".encode()).hexdigest()
            object.__setattr__(self, "key", digest)

    @property
    def package(self) -> str:
        return package_of(self.source)

    @property
    def rule_path(self) -> list[str]:
        """The entry point without `data.`: ["warden", "decision"]."""
        return self.entry_point.split(".")[1:]


@dataclass(frozen=True)
class Evaluation:
    """The entry point's value for one input; `defined` is false when Rego says "undefined"."""

    value: Any
    defined: bool
    engine: str


class PolicyCompileError(Exception):
    """The source does not compile (or cannot be what a policy must be). 1-based position."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.message, self.line, self.column = message, line, column

    def __str__(self) -> str:
        where = f"{self.line}:{self.column}: " if self.line is not None else ""
        return f"{where}{self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"message": self.message, "line": self.line, "column": self.column}


class EngineError(Exception):
    """The engine could not produce a value (its process died, a runtime error, OPA down)."""


class EngineTimeout(EngineError):
    """Evaluation (or compilation) ran past its time limit and was stopped."""


class PolicyEngine(Protocol):
    name: str

    def check(self, module: PolicyModule, *, sample_input: Mapping[str, Any]) -> None:
        """Raise PolicyCompileError unless `module` compiles, defines its entry point and
        evaluates against `sample_input` without an engine error. EngineError when the engine
        could not tell (then nothing unverified should be saved)."""
        ...

    def evaluate(self, module: PolicyModule, input_doc: Mapping[str, Any]) -> Evaluation:
        """The entry point's value for `input_doc`; compiles `module` on first use."""
        ...

    def evaluates_in_process(self, module: PolicyModule) -> bool:
        """Whether `evaluate(module, …)` runs in the calling thread: no helper process, no
        server, no I/O (it cannot stall on anything outside this process)."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- source analysis


def package_of(source: str) -> str:
    match = _PACKAGE.search(source)
    if match is None:
        raise PolicyCompileError("the module declares no package", line=1, column=1)
    return match.group(1)


def check_entry_point(module: PolicyModule) -> None:
    """The entry point must be a rule of the module's own package, defined in the module.

    Both engines need it: OPA evaluates every tenant's module in one data tree, so Warden moves
    each module into a package of its own there (see `opa.namespaced`), which only works for
    paths inside the module's package.
    """
    if not _ENTRY_POINT.match(module.entry_point):
        raise PolicyCompileError(
            f"entry point {module.entry_point!r} must look like data.<package>.<rule>"
        )
    package = package_of(module.source)
    prefix = f"data.{package}."
    if not module.entry_point.startswith(prefix):
        raise PolicyCompileError(
            f"entry point {module.entry_point!r} is not a rule of package {package!r}"
        )
    rule = module.entry_point[len(prefix) :].split(".")[0]
    head = re.compile(rf"^[ \t]*(?:default[ \t]+)?{re.escape(rule)}\b", re.M)
    if head.search(module.source) is None:
        raise PolicyCompileError(f"rule {rule!r} (the entry point) is not defined")


def position(source: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a byte offset into the UTF-8 encoded source."""
    before = source.encode()[: max(0, offset)]
    line = before.count(b"\n") + 1
    column = len(before.rsplit(b"\n", 1)[-1].decode(errors="ignore")) + 1
    return line, column


def locate(source: str, needle: str) -> tuple[int | None, int | None]:
    """Line and column of the first occurrence of `needle` (for errors the engine reports
    without a position, like an unknown function)."""
    index = source.find(needle)
    if index < 0:
        return None, None
    return position(source, len(source[:index].encode()))
