"""The shipped builtin tools, registered in the executors' process-wide `default_registry`.

`load_builtins()` makes the registry complete: it imports this module's tools, registers the
HTTP fetch when `WARDEN_HTTP_FETCH_ALLOWED_HOSTS` names hosts, and imports the modules listed in
`WARDEN_TOOL_MODULES` once, so deployments (and the test suite's worker) add tools with

    from apps.tools.executors.builtin import default_registry

    @default_registry.register("my_tool", description="...", input_schema={...})
    def my_tool(arguments, call): ...
"""

from __future__ import annotations

import ast
import importlib
import math
import operator
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apps.core.egress.adapters import platform_egress_policy
from apps.tools.executors.base import ToolArgumentsInvalid, ToolFailed
from apps.tools.executors.builtin import (
    BuiltinCall,
    BuiltinRegistry,
    default_registry,
    register_http_fetch,
)

_loaded = False
_load_lock = threading.Lock()
DJANGO_BUILTIN_MODULES = ["apps.tools.builtin_memory"]


def load_builtins(registry: BuiltinRegistry = default_registry) -> BuiltinRegistry:
    """Register the shipped builtins and import the plugin modules, once per process."""
    global _loaded
    if _loaded:
        return registry
    from django.conf import settings

    with _load_lock:
        if _loaded:
            return registry
        hosts = list(getattr(settings, "WARDEN_HTTP_FETCH_ALLOWED_HOSTS", []))
        if hosts and "http_fetch" not in registry:
            register_http_fetch(registry, allowed_hosts=hosts, egress=platform_egress_policy)
        # Builtins that need Django (the ORM) live in their own modules: this one must stay
        # importable without it, since cpu-bound helper processes import it (executors/cpu.py).
        for module in [*DJANGO_BUILTIN_MODULES, *getattr(settings, "WARDEN_TOOL_MODULES", [])]:
            importlib.import_module(module)
        _loaded = True
    return registry


# --------------------------------------------------------------------------- clock_now


def clock_now(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
    zone_name = arguments.get("timezone") or "UTC"
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolArgumentsInvalid(f"unknown time zone {zone_name!r}") from None
    now = datetime.now(UTC).astimezone(zone)
    return {
        "timezone": zone_name,
        "iso": now.isoformat(timespec="seconds"),
        "weekday": now.strftime("%A"),
    }


# --------------------------------------------------------------------------- calculator

# Bounds that make every accepted expression finish in microseconds: at most this many
# characters and syntax-tree nodes, this deep, and no integer (operand, intermediate or result)
# wider than MAX_INT_BITS. Each bound is checked before the operation that would break it, so
# "9**9**9**9" or "((10**100)**100)**100" is refused without being computed. MAX_INT_BITS keeps
# results printable too (Python refuses int→str past 4300 digits; 8192 bits is 2467 digits).
# Floats need no such bound: IEEE arithmetic is O(1), and an overflow raises or gives inf.
MAX_EXPRESSION_CHARS = 200
MAX_EXPRESSION_NODES = 100
MAX_EXPRESSION_DEPTH = 20
MAX_INT_BITS = 8192

_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def _too_large(what: str) -> ToolArgumentsInvalid:
    return ToolArgumentsInvalid(
        f"{what} would exceed {MAX_INT_BITS} bits; nothing was computed",
        code="calculation_too_large",
    )


def _result_bits_bound(op: ast.operator, left: int, right: int) -> int:
    """An upper bound on the bit length of `left <op> right` for two ints."""
    a, b = left.bit_length(), right.bit_length()
    if isinstance(op, ast.Pow):
        if right < 0 or abs(left) <= 1:
            return 1  # a float below 1, or 0/1/-1 whatever the exponent
        if right > MAX_INT_BITS:
            return right  # |left| >= 2, so at least 2**right
        # bits(x) = floor(log2 |x|) + 1; one more bit covers the float's rounding.
        return math.floor(right * math.log2(abs(left))) + 2
    if isinstance(op, ast.Mult):
        return a + b
    return max(a, b) + 1  # + and -; / // % are no wider than their operands


def _evaluate(node: ast.AST, depth: int = 0) -> int | float:
    # A whitelist walk of the AST: numbers and arithmetic only, never eval().
    if depth > MAX_EXPRESSION_DEPTH:
        raise ToolArgumentsInvalid(f"expression nested deeper than {MAX_EXPRESSION_DEPTH} levels")
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, depth + 1)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _checked(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left, depth + 1), _evaluate(node.right, depth + 1)
        if isinstance(left, int) and isinstance(right, int):
            if _result_bits_bound(node.op, left, right) > MAX_INT_BITS:
                raise _too_large("the result")
        return _checked(_OPERATORS[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _checked(_OPERATORS[type(node.op)](_evaluate(node.operand, depth + 1)))
    raise ToolArgumentsInvalid("only numbers and + - * / // % ** are allowed")


def _checked(value: Any) -> int | float:
    if isinstance(value, complex):
        raise ToolArgumentsInvalid("the result is not a real number", code="not_a_real_number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolArgumentsInvalid(
            "the result is too large for a number", code="calculation_too_large"
        )
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _too_large("a number")
    return value  # type: ignore[no-any-return]


def calculator(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
    expression = str(arguments["expression"])
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolArgumentsInvalid(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ToolArgumentsInvalid(f"not an arithmetic expression: {expression!r}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_EXPRESSION_NODES:
        raise ToolArgumentsInvalid(f"expression has more than {MAX_EXPRESSION_NODES} terms")
    try:
        value = _evaluate(tree)
    except ZeroDivisionError:
        raise ToolFailed("division by zero", code="division_by_zero") from None
    except OverflowError:
        raise ToolArgumentsInvalid(
            "the result is too large for a number", code="calculation_too_large"
        ) from None
    return {"expression": expression, "value": value}


default_registry.register(
    "clock_now",
    clock_now,
    description="The current date and time in a time zone (IANA name, default UTC).",
    input_schema={
        "type": "object",
        "properties": {"timezone": {"type": "string", "default": "UTC"}},
        "additionalProperties": False,
    },
    idempotent=True,
    risk_tier="low",
    timeout_s=5.0,
    in_process=True,
    replace=True,
)
default_registry.register(
    "calculator",
    calculator,
    description="Evaluate an arithmetic expression, e.g. '(2 + 3) * 4'.",
    input_schema={
        "type": "object",
        "properties": {"expression": {"type": "string", "maxLength": MAX_EXPRESSION_CHARS}},
        "required": ["expression"],
        "additionalProperties": False,
    },
    idempotent=True,
    risk_tier="low",
    timeout_s=5.0,
    # Bounded above, and still run where its timeout can stop it: defence in depth.
    cpu_bound=True,
    in_process=True,
    replace=True,
)
