"""Running catalog tools in a worker: definitions from rows, one guarded executor per process,
and the ephemeral credential minted for every call.

    tools = resolve_tools(tenant_id=..., names=agent.allowed_tools)
    outcome = tool_call(tools["get_current_time"], {"timezone": "UTC"}, tenant_id=..., ...)

The executors (apps/tools/executors) are framework-free; this module maps catalog rows onto
their `ToolDefinition`s, MCP server configs and WASM module specs. Those are looked up by key
from process-wide maps filled here just before each call, so the executors never touch the
database and a changed row (a rotated secret, say) is picked up by the next call.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

from apps.core import crypto
from apps.core.breakers.adapters import breaker_store
from apps.core.egress.adapters import platform_egress_policy
from apps.core.exceptions import WardenError
from apps.tools import selectors
from apps.tools.builtins import load_builtins
from apps.tools.credentials import (
    MAX_CREDENTIAL_TTL_S,
    CredentialClaims,
    CredentialRefused,
    RedisReplayStore,
    ReplayStore,
    mint_credential,
    verify_credential,
)
from apps.tools.executors.base import CallContext, RetryPolicy, ToolDefinition, ToolOutcome
from apps.tools.executors.builtin import BuiltinExecutor
from apps.tools.executors.mcp import McpExecutor, McpServerConfig, default_pool
from apps.tools.executors.wasm import MIB, WasmExecutor, WasmModuleSpec, shipped_module
from apps.tools.executors.wrapper import CircuitBreakers, GuardedExecutor, cap_for_model
from apps.tools.models import McpServer, Tool, ToolSource
from apps.tools.stdio import stdio_launch

logger = logging.getLogger("warden.tools")
audit = logging.getLogger("warden.audit")


@dataclass(frozen=True)
class ResolvedTool:
    """A tool an agent may call in this turn, ready to run.

    `resource` is the credential's scope: `mcp:<server name>`, `wasm:<module>` or
    `builtin:<name>`. `row` is None for a builtin that the catalog does not list.
    """

    definition: ToolDefinition
    resource: str
    long_running: bool = False
    row: Tool | None = None

    @property
    def name(self) -> str:
        return self.definition.name


# --------------------------------------------------------------------------- rows → executors


def mcp_server_key(server: McpServer) -> str:
    # Unique across tenants (two tenants may both call a server "git"): the key names the
    # pooled connection and the circuit breaker.
    return f"{server.name}@{server.id}"


def mcp_server_config(server: McpServer) -> McpServerConfig:
    """The executor's view of a server row; the only place its auth secret is decrypted.

    A stdio server's command comes from its template, its arguments and environment are checked
    against the template again now (McpServerInvalid), and its workspace is created if needed.
    Network transports connect only where the platform's egress policy allows.
    Raises ValueError for a configuration the executor refuses and SecretDecryptionError when
    the secret cannot be read with the configured keys.
    """
    secret = crypto.decrypt(server.auth_secret_encrypted) if server.auth_secret_encrypted else None
    if server.transport == "stdio":
        launch = stdio_launch(
            tenant_id=server.tenant_id,
            template=server.template,
            args=server.args,
            env=server.env,
            secrets={server.auth_env: secret} if secret is not None else {},
            auth_env=server.auth_env,
            credential_env=server.credential_env,
        )
        return McpServerConfig(
            key=mcp_server_key(server),
            transport="stdio",
            command=launch.command,
            args=launch.args,
            env=launch.env,
            cwd=launch.cwd,
            credential_env=server.credential_env or None,
            connect_timeout_s=server.connect_timeout_s,
        )
    headers: dict[str, str] = {}
    if secret is not None:
        header = server.auth_header or "Authorization"
        headers[header] = f"Bearer {secret}" if header.lower() == "authorization" else secret
    return McpServerConfig(
        key=mcp_server_key(server),
        transport=server.transport,  # type: ignore[arg-type]
        url=server.url or None,
        headers=headers,
        credential_header=server.credential_header or None,
        connect_timeout_s=server.connect_timeout_s,
        egress=platform_egress_policy(),
    )


def wasm_module_spec(tool: Tool) -> WasmModuleSpec:
    """The sandbox's view of a WASM tool: its module pinned to the approved bytes."""
    return shipped_module(
        tool.wasm_module,
        sha256=tool.wasm_sha256 or None,
        memory_limit_bytes=tool.wasm_memory_mb * MIB,
    )


def _wasm_key(tool: Tool) -> str:
    return f"{tool.wasm_module}@{tool.id}"


def credential_resource(tool: Tool) -> str:
    if tool.source == ToolSource.MCP and tool.server is not None:
        return f"mcp:{tool.server.name}"
    if tool.source == ToolSource.WASM:
        return f"wasm:{tool.wasm_module}"
    return f"builtin:{tool.remote_name}"


def tool_definition(tool: Tool) -> ToolDefinition:
    """A catalog row as the executors see it. Builtins take their schemas from the code that
    runs them (the deployment is their source of truth); the catalog governs the rest."""
    description, input_schema, output_schema = (
        tool.description,
        tool.input_schema,
        tool.output_schema,
    )
    if tool.source == ToolSource.BUILTIN:
        live = load_builtins().get(tool.remote_name)  # KeyError: no longer deployed
        description, input_schema, output_schema = (
            live.description,
            live.input_schema,
            live.output_schema,
        )
        server = tool.remote_name
    elif tool.source == ToolSource.MCP:
        assert tool.server is not None
        server = mcp_server_key(tool.server)
    else:
        server = _wasm_key(tool)
    return ToolDefinition(
        name=tool.name,
        description=description,
        input_schema=input_schema or {"type": "object"},
        output_schema=output_schema or None,
        source=tool.source,  # type: ignore[arg-type]
        server=server,
        risk_tier=tool.risk_tier,  # type: ignore[arg-type]
        idempotent=tool.idempotent,
        timeout_s=tool.timeout_s,
        retry=RetryPolicy(
            max_attempts=tool.retry_max_attempts,
            base_delay_s=tool.retry_base_delay_s,
            max_delay_s=tool.retry_max_delay_s,
        ),
        remote_name=tool.remote_name,
    )


def resolve_tools(
    *, tenant_id: uuid.UUID, names: Iterable[str], rows: Mapping[str, Tool] | None = None
) -> dict[str, ResolvedTool]:
    """The usable tools among `names`, by name.

    A catalog row decides: a disabled, unapproved, changed or missing tool is not usable, even
    if a builtin of that name exists. A name the catalog lacks may still be a builtin from the
    registry (with the registry's own settings). `rows`: the tenant's rows for `names`, as
    `tools_by_name` reads them, when the caller already has them.
    """
    registry = load_builtins()
    wanted = list(dict.fromkeys(names))
    if rows is None:
        rows = selectors.tools_by_name(tenant_id=tenant_id, names=wanted)
    resolved: dict[str, ResolvedTool] = {}
    for name in wanted:
        row = rows.get(name)
        if row is not None:
            if not row.is_available:
                logger.info("tool not available", extra={"tool": name, "tenant_id": str(tenant_id)})
                continue
            try:
                definition = tool_definition(row)
            except KeyError:
                logger.warning("builtin tool is not deployed", extra={"tool": name})
                continue
            resolved[name] = ResolvedTool(
                definition=definition,
                resource=credential_resource(row),
                long_running=row.long_running,
                row=row,
            )
        elif name in registry:
            resolved[name] = ResolvedTool(
                definition=registry.get(name).definition(), resource=f"builtin:{name}"
            )
        else:
            logger.warning("agent names unknown tool", extra={"tool": name})
    return resolved


# --------------------------------------------------------------------------- the executor

# Filled just before each call; the executors look configs up by key.
_mcp_configs: dict[str, McpServerConfig] = {}
_wasm_specs: dict[str, WasmModuleSpec] = {}
_executor: GuardedExecutor | None = None
_builtin_executor: BuiltinExecutor | None = None
_executor_lock = threading.Lock()


def executor() -> GuardedExecutor:
    """This process's executor: its MCP connections outlive a turn (its circuit breakers live
    in the shared breaker store)."""
    global _executor, _builtin_executor
    with _executor_lock:
        if _executor is None:
            _builtin_executor = BuiltinExecutor(
                load_builtins(),
                # Every turn a worker runs may be waiting on a builtin at once.
                max_workers=settings.WARDEN_WORKER_TURNS,
                cpu_helpers=settings.WARDEN_BUILTIN_CPU_HELPERS,
                cpu_memory_limit_bytes=settings.WARDEN_BUILTIN_CPU_MEMORY_MB * 1024 * 1024,
            )
            _executor = GuardedExecutor(
                {
                    "mcp": McpExecutor(_mcp_configs.__getitem__),
                    "wasm": WasmExecutor(_wasm_specs.__getitem__),
                    "builtin": _builtin_executor,
                },
                # In the shared store: a server found down by one worker is skipped by all.
                breakers=CircuitBreakers(
                    breaker_store(),
                    fail_max=settings.WARDEN_TOOL_BREAKER_FAIL_MAX,
                    reset_timeout_s=settings.WARDEN_TOOL_BREAKER_RESET_SECONDS,
                ),
            )
        return _executor


def executor_shutdown() -> None:
    """Close pooled MCP connections (stopping stdio servers), the builtin threads and the
    cpu-bound builtins' helper processes."""
    global _executor, _builtin_executor
    with _executor_lock:
        if _builtin_executor is not None:
            _builtin_executor.shutdown()
        _executor = _builtin_executor = None
    default_pool().close()


def _forget_executor_in_child() -> None:
    # The builtin thread pool does not survive a fork (Celery prefork), and the helper
    # processes belong to the parent: start over.
    global _executor, _builtin_executor
    _executor = _builtin_executor = None


os.register_at_fork(after_in_child=_forget_executor_in_child)


def failure_outcome(code: str, message: str) -> ToolOutcome:
    text, _ = cap_for_model(f"Tool call failed ({code}): {message}", 4096)
    return ToolOutcome(ok=False, error_code=code, error_message=message, model_text=text)


def outcome_error_text(outcome: ToolOutcome) -> str:
    """What the model and the event stream are told: the stable code, then the reason."""
    return f"{outcome.error_code}: {outcome.error_message}"


def tool_call(
    tool: ResolvedTool,
    arguments: Mapping[str, Any],
    *,
    tenant_id: str,
    session_id: str,
    turn_id: str,
    idempotency_key: str,
) -> ToolOutcome:
    """Run one call: validated, timed out, retried and capped by the guarded executor, with a
    fresh credential scoped to this tenant, session, tool and resource when the tool is given
    one (`_delivers_credential`)."""
    row = tool.row
    try:
        if row is not None and row.source == ToolSource.MCP and row.server is not None:
            _mcp_configs[tool.definition.server] = mcp_server_config(row.server)
        elif row is not None and row.source == ToolSource.WASM:
            _wasm_specs[tool.definition.server] = wasm_module_spec(row)
    except (ValueError, LookupError, crypto.SecretDecryptionError, WardenError) as exc:
        message = exc.message if isinstance(exc, WardenError) else str(exc)
        logger.warning("tool misconfigured", extra={"tool": tool.name, "error": message})
        return failure_outcome("tool_misconfigured", message)

    def mint() -> str:
        # Credentials are single-use, so each attempt (a retry too) gets its own.
        return credential_mint(
            tenant_id=tenant_id,
            session_id=session_id,
            tool=tool.definition.call_name,
            resource=tool.resource,
            turn_id=turn_id,
            call_id=idempotency_key,
        )

    delivered = _delivers_credential(tool.definition)
    ctx = CallContext(
        tenant_id=tenant_id,
        session_id=session_id,
        turn_id=turn_id,
        idempotency_key=idempotency_key,
        credential=mint() if delivered else None,
        credential_factory=mint if delivered else None,
    )
    return executor().execute(tool.definition, arguments, ctx=ctx)


def _delivers_credential(definition: ToolDefinition) -> bool:
    """Whether the call's credential reaches anything: an MCP server configured to receive it
    (`credential_header` / `credential_env`), a WASM module given `credential_env`, or a builtin
    registered with `takes_credential`. Only then is one minted: a credential nothing presents
    would be an audited token for nobody (and a JWT signed per call for nothing)."""
    if definition.source == ToolSource.MCP:
        config = _mcp_configs.get(definition.server)
        return config is not None and config.delivers_credential
    if definition.source == ToolSource.WASM:
        spec = _wasm_specs.get(definition.server)
        return spec is not None and bool(spec.credential_env)
    registry = load_builtins()
    return definition.server in registry and registry.get(definition.server).takes_credential


# --------------------------------------------------------------------------- credentials


def credential_signing_key() -> str:
    """`WARDEN_TOOL_CREDENTIAL_KEY`, or a key derived from SECRET_KEY (never SECRET_KEY itself)."""
    configured: str = settings.WARDEN_TOOL_CREDENTIAL_KEY
    if configured:
        return configured
    return hashlib.sha256(f"warden-tool-credential:{settings.SECRET_KEY}".encode()).hexdigest()


def credential_mint(
    *,
    tenant_id: str,
    session_id: str,
    tool: str,
    resource: str,
    turn_id: str = "",
    call_id: str = "",
) -> str:
    """A fresh single-use credential. Its id is recorded on the audit log with the call it was
    minted for (`call_id`: the action-graph node id, which is the call's idempotency key), so
    a token seen later can be traced to the one call that may use it."""
    ttl = min(int(settings.WARDEN_TOOL_CREDENTIAL_TTL_SECONDS), MAX_CREDENTIAL_TTL_S)
    jti = uuid.uuid4().hex
    token = mint_credential(
        signing_key=credential_signing_key(),
        tenant_id=tenant_id,
        session_id=session_id,
        tool=tool,
        resource=resource,
        ttl_s=ttl,
        jti=jti,
    )
    audit.info(
        "tool credential minted",
        extra={
            "jti": jti,
            "tenant_id": tenant_id,
            "session_id": session_id,
            "turn_id": turn_id,
            "node_id": call_id,
            "tool": tool,
            "resource": resource,
            "ttl_s": ttl,
        },
    )
    return token


_replay_clients: dict[str, redis.Redis] = {}
_replay_lock = threading.Lock()


def credential_replay_store() -> ReplayStore:
    """The Redis store of presented credential ids (`WARDEN_TOOL_CREDENTIAL_REPLAY_REDIS_URL`,
    default REDIS_URL). Short socket timeouts: an unreachable Redis refuses the credential
    quickly instead of hanging the caller."""
    url: str = settings.WARDEN_TOOL_CREDENTIAL_REPLAY_REDIS_URL or settings.REDIS_URL
    with _replay_lock:
        client = _replay_clients.get(url)
        if client is None:
            client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
            _replay_clients[url] = client
    return RedisReplayStore(client)


def credential_check(*, token: str, tenant_id: str, tool: str, resource: str) -> CredentialClaims:
    """Verify a credential presented back to the platform, once: a second presentation is
    refused (`credential_replayed`), and so is any token while the replay store is unreachable.
    A refusal is audited (the reason and the token's id, never the token) and re-raised as
    CredentialRefused."""
    try:
        return verify_credential(
            token,
            signing_key=credential_signing_key(),
            tenant_id=tenant_id,
            tool=tool,
            resource=resource,
            replay_store=credential_replay_store(),
        )
    except CredentialRefused as exc:
        audit.warning(
            "tool credential refused",
            extra={
                "reason": exc.reason,
                "jti": exc.jti,
                "tenant_id": tenant_id,
                "tool": tool,
                "resource": resource,
            },
        )
        raise
