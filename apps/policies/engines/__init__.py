"""Policy engines behind one interface (no Django here): in-process Rego (`rego`, regopy: the
shipped default policy in the calling thread, every other one in killable helper processes)
and an OPA server (`opa`, opa-python-client)."""

from .base import (
    EngineError,
    EngineTimeout,
    Evaluation,
    PolicyCompileError,
    PolicyEngine,
    PolicyModule,
)

__all__ = [
    "EngineError",
    "EngineTimeout",
    "Evaluation",
    "PolicyCompileError",
    "PolicyEngine",
    "PolicyModule",
]
