"""The `memory_search` builtin: the calling tenant's long-term memory (apps.memory).

A module of its own because it needs Django (the ORM), and apps/tools/builtins.py must stay
importable without it; `load_builtins()` imports this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import connection

from apps.core.exceptions import InvalidInput
from apps.memory import services as memory_services
from apps.memory.exceptions import EmbedderDown
from apps.tools.executors.base import ToolArgumentsInvalid, ToolUnavailable
from apps.tools.executors.builtin import BuiltinCall, default_registry

MEMORY_SEARCH_MAX_K = 10
MEMORY_SNIPPET_CHARS = 600


def memory_search(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
    """The calling tenant's long-term memory, nearest chunks first. The tenant is the call's
    (never an argument), so an agent reads only its own tenant's memory."""
    try:
        hits = memory_services.memory_search(
            tenant_id=call.ctx.tenant_id,
            query=str(arguments["query"]),
            k=int(arguments.get("k") or 3),
            namespace=arguments.get("namespace") or None,
            metadata=arguments.get("filter") or None,
        )
    except EmbedderDown as exc:
        # Degrades visibly: the tool result on the timeline says memory is unavailable.
        raise ToolUnavailable(exc.message, code=exc.code, maybe_executed=False) from None
    except InvalidInput as exc:
        raise ToolArgumentsInvalid(exc.message, code=exc.code) from None
    finally:
        # This runs on the executor's thread pool: give its database connection back rather
        # than keep one open per pool thread.
        connection.close()
    return {
        "results": [
            {
                "title": hit.title,
                "document_id": str(hit.document_id),
                "namespace": hit.namespace,
                "score": round(hit.score, 3),
                "text": hit.text[:MEMORY_SNIPPET_CHARS],
            }
            for hit in hits
        ]
    }


default_registry.register(
    "memory_search",
    memory_search,
    description="Search the tenant's long-term memory (ingested documents) for passages "
    "relevant to a query; cite the titles of the passages you use.",
    input_schema={
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 2000},
            "k": {"type": "integer", "minimum": 1, "maximum": MEMORY_SEARCH_MAX_K, "default": 3},
            "namespace": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,63}$"},
            "filter": {
                "type": "object",
                "description": 'Metadata the documents must have, e.g. {"kind": "handbook"}.',
                "additionalProperties": {"type": ["string", "number", "boolean"]},
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    },
    idempotent=True,
    risk_tier="low",
    timeout_s=30.0,
    replace=True,
)
