"""Writes for MCP servers and the tool catalog: register, discover, approve, govern."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from celery import current_app
from celery.exceptions import TimeoutError as CeleryTimeoutError
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from jsonschema import SchemaError
from jsonschema.validators import validator_for

from apps.core import crypto
from apps.core.exceptions import Conflict, WardenError
from apps.llm.models import Sensitivity
from apps.tenants.models import Tenant
from apps.tools.builtins import load_builtins
from apps.tools.exceptions import (
    DiscoveryFailed,
    DiscoveryUnavailable,
    McpServerInvalid,
    ToolInvalid,
    ToolMissing,
)
from apps.tools.execution import mcp_server_config
from apps.tools.executors.base import RetryPolicy, ToolError
from apps.tools.executors.mcp import McpClientPool, discover, schema_hash
from apps.tools.executors.wasm import WORD_COUNT_TOOL, shipped_module
from apps.tools.models import (
    McpServer,
    RiskTier,
    ServerStatus,
    Tool,
    ToolSource,
    Transport,
)
from apps.tools.stdio import stdio_parameters_check

logger = logging.getLogger("warden.tools")

_SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,100}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
_TOOL_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
MAX_TOOL_NAME = 64
MAX_TOOL_TIMEOUT_S = 3600.0

# --------------------------------------------------------------------------- MCP servers

SERVER_FIELDS = frozenset(
    {
        "name",
        "description",
        "transport",
        "template",
        "args",
        "env",
        "url",
        "auth_header",
        "auth_env",
        "credential_header",
        "credential_env",
        "connect_timeout_s",
        "is_active",
    }
)


def _validate_server(server: McpServer) -> None:
    if not _SLUG.match(server.name or ""):
        raise McpServerInvalid("name must be a slug (letters, digits, - and _).")
    if server.transport not in Transport.values:
        raise McpServerInvalid(f"transport must be one of {', '.join(Transport.values)}.")
    if not isinstance(server.args, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in server.args.items()
    ):
        raise McpServerInvalid("args must map argument names to strings.")
    if not isinstance(server.env, dict) or not all(
        isinstance(k, str) and _ENV_NAME.match(k) and isinstance(v, str)
        for k, v in server.env.items()
    ):
        raise McpServerInvalid("env must map variable names to strings.")
    if not 0 < server.connect_timeout_s <= 120:
        raise McpServerInvalid("connect_timeout_s must be between 0 and 120 seconds.")
    for label, value, pattern in (
        ("auth_env", server.auth_env, _ENV_NAME),
        ("credential_env", server.credential_env, _ENV_NAME),
        ("auth_header", server.auth_header, _HEADER_NAME),
        ("credential_header", server.credential_header, _HEADER_NAME),
    ):
        if value and not pattern.match(value):
            raise McpServerInvalid(f"{label} {value!r} is not a valid name.")
    if server.transport == Transport.STDIO:
        if not server.template:
            raise McpServerInvalid(
                "A stdio server names a template (GET /api/v1/mcp-server-templates).",
                code="template_unknown",
            )
        if server.auth_secret_encrypted and not server.auth_env:
            raise McpServerInvalid("A stdio server's auth secret needs auth_env.")
        if server.auth_header or server.credential_header:
            raise McpServerInvalid(
                "stdio servers take secrets and credentials in environment variables "
                "(auth_env, credential_env), not headers."
            )
        stdio_parameters_check(
            tenant_id=server.tenant_id,
            template=server.template,
            args=server.args,
            env=server.env,
            auth_env=server.auth_env,
            credential_env=server.credential_env,
        )
        return
    if server.template or server.args or server.env:
        raise McpServerInvalid(
            "template, args and env are for stdio servers only.", code="invalid_mcp_server"
        )
    if server.auth_env or server.credential_env:
        raise McpServerInvalid(
            "Network transports take secrets and credentials in headers "
            "(auth_header, credential_header), not environment variables."
        )
    try:
        mcp_server_config(server)
    except ValueError as exc:
        raise McpServerInvalid(str(exc)) from None


def mcp_server_save(
    *,
    tenant: Tenant,
    server: McpServer | None = None,
    auth_secret: str | None = None,
    **fields: Any,
) -> McpServer:
    """Create (server=None) or update a server. `auth_secret` is encrypted; "" clears it."""
    unknown = set(fields) - SERVER_FIELDS
    if unknown:
        raise McpServerInvalid(f"Unknown server fields: {', '.join(sorted(unknown))}.")
    server = server or McpServer(tenant=tenant)
    for name, value in fields.items():
        setattr(server, name, value)
    if server.url and server.transport == Transport.STDIO:
        server.url = ""
    if auth_secret is not None:
        server.auth_secret_encrypted = crypto.encrypt(auth_secret) if auth_secret else ""
    _validate_server(server)
    try:
        with transaction.atomic():
            server.save()
    except IntegrityError as exc:
        raise Conflict(f"An MCP server named {server.name!r} exists.", code="name_taken") from exc
    return server


def mcp_server_delete(*, server: McpServer) -> None:
    """Delete the server and its tools from the catalog (agents naming them lose them)."""
    server.delete()


# --------------------------------------------------------------------------- discovery


@dataclass
class DiscoveryResult:
    """What one discovery did to the catalog, by catalog tool name (`listed`: how many
    tools the server offered)."""

    listed: int = 0
    created: list[str] = field(default_factory=list)
    schema_changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def changes(self) -> dict[str, list[str]]:
        return {k: v for k, v in self.as_dict().items() if isinstance(v, list)}


def _record_failure(server: McpServer, code: str, message: str) -> None:
    server.status = ServerStatus.ERROR
    server.last_error = f"{code}: {message}"[:2000]
    McpServer.objects.filter(id=server.id).update(
        status=server.status, last_error=server.last_error, updated_at=timezone.now()
    )


def tool_discover(
    *, server: McpServer, approve: bool = False, by: AbstractBaseUser | None = None
) -> DiscoveryResult:
    """Connect to the server, list its tools and upsert them into the catalog.

    New tools arrive disabled (pending approval) unless `approve`; a tool whose schema no
    longer matches the approved one is flagged `schema_changed` and disabled whatever
    `approve` says (an operator must look at it); tools the server stopped listing are
    flagged `missing` and disabled. A discovery that fails, or returns a malformed list,
    changes nothing in the catalog: it records the error on the server and raises
    DiscoveryFailed.
    """
    try:
        config = mcp_server_config(server)
    except (ValueError, crypto.SecretDecryptionError, WardenError) as exc:
        message = exc.message if isinstance(exc, WardenError) else str(exc)
        problem = exc.code if isinstance(exc, WardenError) else "invalid_mcp_server"
        _record_failure(server, "server_misconfigured", message)
        raise DiscoveryFailed(
            f"MCP server {server.name} is misconfigured: {message}",
            details={"reason": "server_misconfigured", "problem": problem},
        ) from None
    # A pool of its own: discovery runs in workers between other work, and in CLI commands,
    # which should not keep stdio servers alive afterwards.
    pool = McpClientPool()
    try:
        entries = discover(
            config, pool=pool, timeout_s=settings.WARDEN_MCP_DISCOVERY_TIMEOUT_SECONDS
        )
    except ToolError as exc:
        _record_failure(server, exc.code, exc.message)
        details: dict[str, Any] = {"reason": exc.code}
        problems = getattr(exc, "problems", None)
        if problems:
            details["problems"] = problems[:20]
        raise DiscoveryFailed(
            f"Discovery on MCP server {server.name} failed ({exc.code}): {exc.message}",
            details=details,
        ) from None
    except Exception as exc:
        logger.exception("discovery crashed", extra={"server": server.name})
        _record_failure(server, "internal_error", type(exc).__name__)
        raise DiscoveryFailed(
            f"Discovery on MCP server {server.name} failed unexpectedly.",
            details={"reason": "internal_error"},
        ) from None
    finally:
        pool.close()
    return _catalog_upsert(server, entries, approve=approve, by=by)


DISCOVER_TASK = "tools.discover_server"
# How long a web request waits beyond the discovery's own bounds (queueing, the round trip).
_DISCOVERY_WAIT_GRACE_S = 5.0


def tool_discover_on_worker(
    *, server: McpServer, approve: bool = False, by: AbstractBaseUser | None = None
) -> DiscoveryResult:
    """`tool_discover` on a Celery worker, waited for: what web processes call.

    A stdio server is a process on the host that starts it; web processes never start one
    (mcp_pool refuses there). Raises DiscoveryFailed as `tool_discover` does, and
    DiscoveryUnavailable when no worker took the task or answered in time (a task not started
    by then expires unrun).
    """
    wait_s = (
        settings.WARDEN_MCP_DISCOVERY_TIMEOUT_SECONDS
        + server.connect_timeout_s
        + _DISCOVERY_WAIT_GRACE_S
    )
    user_id = by.pk if by is not None and by.is_authenticated else None
    options: dict[str, Any] = {"expires": wait_s}
    if settings.WARDEN_MCP_DISCOVERY_QUEUE:
        options["queue"] = settings.WARDEN_MCP_DISCOVERY_QUEUE
    try:
        pending = current_app.send_task(
            DISCOVER_TASK,
            kwargs={
                "server_id": str(server.id),
                "tenant_id": str(server.tenant_id),
                "approve": approve,
                "user_id": user_id,
            },
            **options,
        )
    except Exception:
        logger.exception("could not dispatch discovery", extra={"server": server.name})
        raise DiscoveryUnavailable(
            "Discovery could not be handed to a worker; try again later."
        ) from None
    try:
        outcome = pending.get(timeout=wait_s, propagate=False, disable_sync_subtasks=False)
    except CeleryTimeoutError:
        raise DiscoveryUnavailable(
            f"No worker finished discovering {server.name} within {wait_s:g}s; "
            "nothing was changed. Try again later."
        ) from None
    finally:
        pending.forget()
    if not isinstance(outcome, dict):
        logger.error("discovery task failed", extra={"server": server.name, "error": outcome})
        raise DiscoveryFailed(
            f"Discovery on MCP server {server.name} failed unexpectedly.",
            details={"reason": "internal_error"},
        )
    if "error" in outcome:
        error = outcome["error"]
        cls = DiscoveryFailed if error["code"] == DiscoveryFailed.code else WardenError
        raise cls(error["message"], code=error["code"], details=error.get("details") or None)
    return DiscoveryResult(**outcome["result"])


def tool_discover_requested(
    *, server: McpServer, approve: bool = False, by: AbstractBaseUser | None = None
) -> DiscoveryResult:
    """Discovery asked for from a web process (REST, the console).

    A stdio server starts a process, so its discovery goes to a worker
    (`tool_discover_on_worker`). A network server starts nothing on our hosts: it is
    discovered here, through the egress guard and within the discovery timeout.
    """
    if server.transport == Transport.STDIO:
        return tool_discover_on_worker(server=server, approve=approve, by=by)
    return tool_discover(server=server, approve=approve, by=by)


def tool_discover_task_run(
    *, server_id: str, tenant_id: str, approve: bool, user_id: int | None
) -> dict[str, Any]:
    """The worker's side of `tool_discover_on_worker`: the outcome as JSON (an error too)."""
    server = McpServer.objects.filter(id=server_id, tenant_id=tenant_id).first()
    if server is None:
        return {"error": {"code": "not_found", "message": "The MCP server no longer exists."}}
    by = get_user_model().objects.filter(pk=user_id).first() if user_id is not None else None
    try:
        result = tool_discover(server=server, approve=approve, by=by)
    except WardenError as exc:
        return {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
    return {"result": result.as_dict()}


def _catalog_name(remote: str, server: McpServer, taken: set[str]) -> str:
    """The name the model will see: the server's name for the tool when it is free in the
    tenant, else prefixed with the server's name (two servers may both have `search`)."""
    base = _TOOL_NAME_CHARS.sub("_", remote)[:MAX_TOOL_NAME]
    if base and base not in taken:
        return base
    prefixed = f"{server.name}_{base}"[:MAX_TOOL_NAME]
    if prefixed not in taken:
        return prefixed
    digest = hashlib.sha256(f"{server.id}:{remote}".encode()).hexdigest()[:8]
    return f"{prefixed[: MAX_TOOL_NAME - 9]}_{digest}"


def _catalog_upsert(
    server: McpServer,
    entries: list[dict[str, Any]],
    *,
    approve: bool,
    by: AbstractBaseUser | None,
) -> DiscoveryResult:
    result = DiscoveryResult()
    now = timezone.now()
    with transaction.atomic():
        # Serialises concurrent discoveries of one server (they would race on new names).
        server = McpServer.objects.select_for_update().get(id=server.id)
        existing = {t.remote_name: t for t in Tool.objects.filter(server=server)}
        taken = set(
            Tool.objects.filter(tenant_id=server.tenant_id)
            .exclude(server=server)
            .values_list("name", flat=True)
        )
        # A new MCP tool must not shadow a builtin agents already rely on.
        taken |= set(_builtin_names())
        taken |= {t.name for t in existing.values()}
        seen: set[str] = set()
        result.listed = len(entries)
        for entry in entries:
            remote = entry["name"]
            seen.add(remote)
            described = {
                "title": entry.get("title") or "",
                "description": entry["description"],
                "input_schema": entry["input_schema"],
                "output_schema": entry["output_schema"],
                "annotations": entry["annotations"],
                "schema_hash": entry["schema_hash"],
                "last_seen_at": now,
            }
            tool = existing.get(remote)
            if tool is None:
                name = _catalog_name(remote, server, taken)
                taken.add(name)
                tool = Tool(
                    tenant_id=server.tenant_id,
                    name=name,
                    remote_name=remote,
                    source=ToolSource.MCP,
                    server=server,
                    risk_tier=entry["suggested_risk_tier"],
                    idempotent=entry["suggested_idempotent"],
                    **described,
                )
                if approve:
                    _approve(tool, by=by, now=now)
                tool.save()
                result.created.append(tool.name)
                continue
            _apply_new_hash(tool, described, result)
            if approve and not tool.approved_schema_hash and not tool.missing:
                _approve(tool, by=by, now=now)
            tool.save()
        for remote, tool in existing.items():
            if remote not in seen and not tool.missing:
                tool.missing = True
                tool.enabled = False
                tool.save(update_fields=["missing", "enabled", "updated_at"])
                result.missing.append(tool.name)
        server.status = ServerStatus.OK
        server.last_error = ""
        server.last_discovered_at = now
        server.save(update_fields=["status", "last_error", "last_discovered_at", "updated_at"])
    logger.info(
        "tools discovered",
        extra={
            "server": server.name,
            "tenant_id": str(server.tenant_id),
            # Counts, under names that do not collide with LogRecord's own ("created").
            **{f"tools_{k}": len(v) for k, v in result.changes().items()},
        },
    )
    return result


def _apply_new_hash(tool: Tool, described: Mapping[str, Any], result: DiscoveryResult) -> None:
    """Update a known tool from what its source says now; flag a change from the approved."""
    new_hash = described["schema_hash"]
    for name, value in described.items():
        setattr(tool, name, value)
    if tool.missing:
        # Back on the server, but it stays disabled: re-enabling is an operator's decision.
        tool.missing = False
        result.restored.append(tool.name)
    if tool.approved_schema_hash and new_hash != tool.approved_schema_hash:
        if not tool.schema_changed:
            result.schema_changed.append(tool.name)
        tool.schema_changed = True
        tool.enabled = False
        return
    tool.schema_changed = False
    if tool.name not in result.restored:
        result.unchanged.append(tool.name)


def _builtin_names() -> list[str]:
    return [definition.name for definition in load_builtins().definitions()]


# --------------------------------------------------------------------------- approval, governance

TOOL_FIELDS = frozenset(
    {
        "enabled",
        "risk_tier",
        "data_sensitivity",
        "idempotent",
        "timeout_s",
        "retry_max_attempts",
        "retry_base_delay_s",
        "retry_max_delay_s",
        "long_running",
        "wasm_memory_mb",
    }
)


def _approve(tool: Tool, *, by: AbstractBaseUser | None, now: Any = None) -> None:
    if tool.missing:
        raise ToolMissing(
            f"Tool {tool.name!r} is no longer offered by its server; it cannot be enabled."
        )
    tool.approved_schema_hash = tool.schema_hash
    tool.schema_changed = False
    tool.enabled = True
    tool.approved_at = now or timezone.now()
    tool.approved_by = by if by is not None and by.is_authenticated else None  # type: ignore[assignment]


def tool_approve(*, tool: Tool, by: AbstractBaseUser | None = None) -> Tool:
    """Approve the tool as it is now (its current schema hash) and enable it."""
    with transaction.atomic():
        tool = Tool.objects.select_for_update(of=("self",)).select_related("server").get(id=tool.id)
        _approve(tool, by=by)
        tool.save()
    return tool


def tool_update(*, tool: Tool, by: AbstractBaseUser | None = None, **fields: Any) -> Tool:
    """Change how a tool is governed. `enabled=True` approves its current schema."""
    unknown = set(fields) - TOOL_FIELDS
    if unknown:
        raise ToolInvalid(f"Unknown or read-only tool fields: {', '.join(sorted(unknown))}.")
    enabled = fields.pop("enabled", None)
    with transaction.atomic():
        tool = Tool.objects.select_for_update(of=("self",)).select_related("server").get(id=tool.id)
        for name, value in fields.items():
            setattr(tool, name, value)
        _validate_tool(tool)
        if enabled is True:
            _approve(tool, by=by)
        elif enabled is False:
            tool.enabled = False
        tool.save()
    return tool


def _validate_tool(tool: Tool) -> None:
    if tool.risk_tier not in RiskTier.values:
        raise ToolInvalid(f"risk_tier must be one of {', '.join(RiskTier.values)}.")
    if tool.data_sensitivity not in Sensitivity.values:
        raise ToolInvalid(f"data_sensitivity must be one of {', '.join(Sensitivity.values)}.")
    if not 0 < tool.timeout_s <= MAX_TOOL_TIMEOUT_S:
        raise ToolInvalid(f"timeout_s must be between 0 and {MAX_TOOL_TIMEOUT_S:g} seconds.")
    if not 1 <= tool.retry_max_attempts <= 10:
        raise ToolInvalid("retry_max_attempts must be between 1 and 10.")
    if not 1 <= tool.wasm_memory_mb <= 4096:
        raise ToolInvalid("wasm_memory_mb must be between 1 and 4096.")
    try:
        RetryPolicy(
            max_attempts=tool.retry_max_attempts,
            base_delay_s=tool.retry_base_delay_s,
            max_delay_s=tool.retry_max_delay_s,
        )
    except ValueError as exc:
        raise ToolInvalid(f"retry policy: {exc}") from None


# --------------------------------------------------------------------------- WASM and builtins

# Descriptions and schemas of the shipped modules meant as tools (the others are test modules).
SHIPPED_WASM_TOOLS = {WORD_COUNT_TOOL.server: WORD_COUNT_TOOL}


def _check_object_schema(label: str, schema: Any) -> None:
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        raise ToolInvalid(f'{label} must be an object schema ("type": "object").')
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise ToolInvalid(f"{label} is not a valid JSON Schema: {exc.message}") from None


def _register_local(
    *,
    tenant: Tenant,
    name: str,
    source: str,
    described: dict[str, Any],
    defaults: dict[str, Any],
    approve: bool,
    by: AbstractBaseUser | None,
    overrides: Mapping[str, Any] | None = None,
) -> Tool:
    """Create or refresh a WASM or builtin catalog row. `defaults` apply to a new row only;
    `overrides` (what the caller asked for explicitly) always."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise ToolInvalid("A tool name is 1-64 letters, digits, _ or -.")
    with transaction.atomic():
        tool = Tool.objects.select_for_update().filter(tenant=tenant, name=name).first()
        if tool is not None and tool.source != source:
            raise Conflict(f"A {tool.source} tool named {name!r} exists.", code="name_taken")
        if tool is None:
            tool = Tool(tenant=tenant, name=name, source=source, **described, **defaults)
        else:
            _apply_new_hash(tool, described, DiscoveryResult())
        for field_name, value in (overrides or {}).items():
            setattr(tool, field_name, value)
        if approve:
            _approve(tool, by=by)
        _validate_tool(tool)
        tool.save()
    return tool


def tool_register_wasm(
    *,
    tenant: Tenant,
    module: str,
    name: str | None = None,
    description: str | None = None,
    input_schema: dict[str, Any] | None = None,
    output_schema: dict[str, Any] | None = None,
    approve: bool = False,
    by: AbstractBaseUser | None = None,
    **governance: Any,
) -> Tool:
    """Add (or refresh) a WASM tool running a module from apps/tools/wasm_modules.

    `governance` sets catalog fields (timeout_s, risk_tier, …) on a new or existing row.
    The module's SHA-256 is part of the approved hash and pins the bytes the sandbox will run:
    a module that changed since is refused until the tool is approved again.
    """
    try:
        spec = shipped_module(module)
    except LookupError:
        raise ToolInvalid(f"No WASM module {module!r} is shipped.", code="unknown_module") from None
    known = SHIPPED_WASM_TOOLS.get(module)
    description = description if description is not None else (known.description if known else "")
    input_schema = input_schema or (dict(known.input_schema) if known else {"type": "object"})
    if output_schema is None and known is not None and known.output_schema is not None:
        output_schema = dict(known.output_schema)
    _check_object_schema("input_schema", input_schema)
    if output_schema is not None:
        _check_object_schema("output_schema", output_schema)
    with open(spec.path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    described = {
        "remote_name": module,
        "description": description,
        "input_schema": input_schema,
        "output_schema": output_schema,
        "wasm_module": module,
        "wasm_sha256": digest,
        "schema_hash": schema_hash(
            {
                "name": module,
                "description": description,
                "input_schema": input_schema,
                "output_schema": {"output": output_schema, "module_sha256": digest},
            }
        ),
        "last_seen_at": timezone.now(),
    }
    unknown = set(governance) - TOOL_FIELDS
    if unknown:
        raise ToolInvalid(f"Unknown tool fields: {', '.join(sorted(unknown))}.")
    return _register_local(
        tenant=tenant,
        name=name or module,
        source=ToolSource.WASM,
        described=described,
        defaults={
            "risk_tier": known.risk_tier if known else RiskTier.MEDIUM,
            "idempotent": known.idempotent if known else False,
            "timeout_s": known.timeout_s if known else 5.0,
        },
        overrides={k: v for k, v in governance.items() if k != "enabled"},
        approve=approve or governance.get("enabled") is True,
        by=by,
    )


def tool_register_builtin(
    *,
    tenant: Tenant,
    name: str,
    approve: bool = False,
    by: AbstractBaseUser | None = None,
) -> Tool:
    """Put a deployed builtin under the catalog's governance (risk tier, enabled, …)."""
    try:
        builtin = load_builtins().get(name)
    except KeyError:
        raise ToolInvalid(
            f"No builtin tool {name!r} is deployed.", code="unknown_builtin"
        ) from None
    entry = {
        "name": name,
        "description": builtin.description,
        "input_schema": dict(builtin.input_schema),
        "output_schema": dict(builtin.output_schema) if builtin.output_schema else None,
    }
    described = {
        "remote_name": name,
        "description": entry["description"],
        "input_schema": entry["input_schema"],
        "output_schema": entry["output_schema"],
        "schema_hash": schema_hash(entry),
        "last_seen_at": timezone.now(),
    }
    return _register_local(
        tenant=tenant,
        name=name,
        source=ToolSource.BUILTIN,
        described=described,
        defaults={
            "risk_tier": builtin.risk_tier,
            "idempotent": builtin.idempotent,
            "timeout_s": builtin.timeout_s,
        },
        approve=approve,
        by=by,
    )
