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
        for module in getattr(settings, "WARDEN_TOOL_MODULES", []):
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
            raise ToolFailed("exponent too large", code="calculation_refused")
        return _OPERATORS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))
    raise ToolArgumentsInvalid("only numbers and + - * / // % ** are allowed")


def calculator(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
    expression = arguments["expression"]
    try:
        value = _evaluate(ast.parse(expression, mode="eval"))
    except SyntaxError:
        raise ToolArgumentsInvalid(f"not an arithmetic expression: {expression!r}") from None
    except ZeroDivisionError:
        raise ToolFailed("division by zero", code="division_by_zero") from None
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
    replace=True,
)
default_registry.register(
    "calculator",
    calculator,
    description="Evaluate an arithmetic expression, e.g. '(2 + 3) * 4'.",
    input_schema={
        "type": "object",
        "properties": {"expression": {"type": "string", "maxLength": 200}},
        "required": ["expression"],
        "additionalProperties": False,
    },
    idempotent=True,
    risk_tier="low",
    timeout_s=5.0,
    replace=True,
)
