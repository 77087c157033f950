"""Builtin Python tools: a process-wide registry the agent's toolbox resolves names against.

Modules listed in `WARDEN_TOOL_MODULES` are imported once, so deployments (and
the test suite's worker) can add tools without touching this package.
"""

from __future__ import annotations

import ast
import importlib
import operator
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ToolFunction = Callable[[dict[str, Any]], Any]


class ToolError(Exception):
    """A tool failed in a way the model should be told about (not a crash)."""


@dataclass(frozen=True)
class BuiltinTool:
    name: str
    description: str
    input_schema: dict[str, Any]
    function: ToolFunction
    idempotent: bool = True
    risk_tier: str = "low"


_registry: dict[str, BuiltinTool] = {}
_lock = threading.Lock()
_plugins_loaded = False


def builtin_tool(
    *,
    name: str,
    description: str,
    input_schema: dict[str, Any],
    idempotent: bool = True,
    risk_tier: str = "low",
) -> Callable[[ToolFunction], ToolFunction]:
    def register(function: ToolFunction) -> ToolFunction:
        with _lock:
            _registry[name] = BuiltinTool(
                name=name,
                description=description,
                input_schema=input_schema,
                function=function,
                idempotent=idempotent,
                risk_tier=risk_tier,
            )
        return function

    return register


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    from django.conf import settings

    for module in getattr(settings, "WARDEN_TOOL_MODULES", []):
        importlib.import_module(module)
    _plugins_loaded = True


def get_builtin(name: str) -> BuiltinTool | None:
    _load_plugins()
    return _registry.get(name)


def builtin_names() -> list[str]:
    _load_plugins()
    return sorted(_registry)


# --------------------------------------------------------------------------- the builtins


@builtin_tool(
    name="clock_now",
    description="The current date and time in a time zone (IANA name, default UTC).",
    input_schema={
        "type": "object",
        "properties": {"timezone": {"type": "string", "default": "UTC"}},
        "additionalProperties": False,
    },
)
def clock_now(arguments: dict[str, Any]) -> dict[str, Any]:
    zone_name = arguments.get("timezone") or "UTC"
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ToolError(f"unknown time zone {zone_name!r}") from exc
    now = datetime.now(UTC).astimezone(zone)
    return {
        "timezone": zone_name,
        "iso": now.isoformat(timespec="seconds"),
        "weekday": now.strftime("%A"),
    }


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


def _evaluate(node: ast.AST) -> float:
    # A whitelist walk of the AST: numbers and arithmetic only, never eval().
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ToolError("exponent too large")
        return _OPERATORS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))
    raise ToolError("only numbers and + - * / // % ** are allowed")


@builtin_tool(
    name="calculator",
    description="Evaluate an arithmetic expression, e.g. '(2 + 3) * 4'.",
    input_schema={
        "type": "object",
        "properties": {"expression": {"type": "string", "maxLength": 200}},
        "required": ["expression"],
        "additionalProperties": False,
    },
)
def calculator(arguments: dict[str, Any]) -> dict[str, Any]:
    expression = arguments["expression"]
    try:
        tree = ast.parse(expression, mode="eval")
        value = _evaluate(tree)
    except SyntaxError as exc:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from exc
    except ZeroDivisionError as exc:
        raise ToolError("division by zero") from exc
    return {"expression": expression, "value": value}
