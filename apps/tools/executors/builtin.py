"""Builtin tools: trusted Python functions, registered by name.

    @default_registry.register("memory_search", description=..., input_schema={...})
    def memory_search(arguments, call):      # call.ctx: CallContext, call.timeout_s: float
        return {...}                           # anything JSON-able; raise a ToolError to fail

`default_registry` is the process-wide registry other apps register into at import time (memory
search, say); `BuiltinExecutor()` runs what it holds. A function that waits (I/O) runs on a small
thread pool so the wrapper's timeout holds even if it blocks; it should still honour
`call.timeout_s` for its own I/O, since Python cannot stop a thread that overruns (it is
abandoned, not killed). A function that computes must be registered with `cpu_bound=True`: it
then runs in a helper process that its timeout kills (cpu.py), so an overrun cannot hold the
worker's GIL, and a timeout of it is not retried.

`make_http_fetch` builds the HTTP fetch builtin: GET only, to an allowlist of hosts, checked
before every connection including each redirect hop. Every connection also goes through the
egress guard (apps.core.egress), which checks the address it resolves to: an allowlisted name
that resolves to a private address is refused unless the platform's egress policy allows it.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from apps.core.egress import STRICT, EgressPolicy
from apps.core.egress.httpx_guard import guarded_client

from .base import (
    CallContext,
    RiskTier,
    ToolArgumentsInvalid,
    ToolDefinition,
    ToolError,
    ToolFailed,
    ToolOutcome,
    ToolTimeout,
    ToolUnavailable,
)
from .cpu import DEFAULT_MEMORY_LIMIT_BYTES, CpuBoundRunner, function_reference

logger = logging.getLogger(__name__)
egress_log = logging.getLogger("warden.egress")


@dataclass(frozen=True)
class BuiltinCall:
    """What a builtin function gets besides its arguments."""

    ctx: CallContext
    timeout_s: float


BuiltinFunction = Callable[[Mapping[str, Any], BuiltinCall], Any]


@dataclass(frozen=True)
class BuiltinTool:
    name: str
    description: str
    input_schema: Mapping[str, Any]
    function: BuiltinFunction
    output_schema: Mapping[str, Any] | None = None
    idempotent: bool = False
    risk_tier: RiskTier = "medium"
    timeout_s: float = 30.0
    cpu_bound: bool = False
    in_process: bool = False
    takes_credential: bool = False

    def definition(self) -> ToolDefinition:
        return ToolDefinition(
            name=self.name,
            description=self.description,
            input_schema=self.input_schema,
            output_schema=self.output_schema,
            source="builtin",
            server=self.name,
            idempotent=self.idempotent,
            risk_tier=self.risk_tier,
            timeout_s=self.timeout_s,
        )


class BuiltinRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, BuiltinTool] = {}
        self._lock = threading.Lock()

    def register(
        self,
        name: str,
        function: BuiltinFunction | None = None,
        *,
        description: str,
        input_schema: Mapping[str, Any],
        output_schema: Mapping[str, Any] | None = None,
        idempotent: bool = False,
        risk_tier: RiskTier = "medium",
        timeout_s: float = 30.0,
        cpu_bound: bool = False,
        in_process: bool = False,
        takes_credential: bool = False,
        replace: bool = False,
    ) -> Any:
        """Register `function` under `name`; without `function`, return a decorator.

        `cpu_bound=True` runs the function in a killable helper process: it must be a
        module-level function, importable without Django, taking and returning JSON.
        `in_process=True` says it reaches nothing outside this worker (no I/O, no database,
        no network): its calls skip the circuit breaker (`BuiltinExecutor.breaker_exempt`).
        `takes_credential=True` says it presents the call's credential to something
        (`call.ctx.credential`); other builtins get none, and none is minted for them."""

        def add(fn: BuiltinFunction) -> BuiltinFunction:
            if cpu_bound:
                function_reference(fn)  # ValueError now rather than at the first call
            tool = BuiltinTool(
                name=name,
                description=description,
                input_schema=input_schema,
                function=fn,
                output_schema=output_schema,
                idempotent=idempotent,
                risk_tier=risk_tier,
                timeout_s=timeout_s,
                cpu_bound=cpu_bound,
                in_process=in_process,
                takes_credential=takes_credential,
            )
            with self._lock:
                if name in self._tools and not replace:
                    raise ValueError(f"a builtin tool named {name!r} is already registered")
                self._tools[name] = tool
            return fn

        return add(function) if function is not None else add

    def unregister(self, name: str) -> None:
        with self._lock:
            self._tools.pop(name, None)

    def get(self, name: str) -> BuiltinTool:
        with self._lock:
            return self._tools[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def definitions(self) -> list[ToolDefinition]:
        with self._lock:
            return [tool.definition() for tool in self._tools.values()]

    def cpu_bound_modules(self) -> list[str]:
        """The modules holding cpu-bound builtins (a helper process imports them up front)."""
        with self._lock:
            return sorted({t.function.__module__ for t in self._tools.values() if t.cpu_bound})


default_registry = BuiltinRegistry()


class BuiltinExecutor:
    """Runs builtins: waiting ones on a thread pool, cpu-bound ones in helper processes.

    `cpu_helpers` caps how many cpu-bound calls run at once in this process (each in its own
    helper, whose address space is capped at `cpu_memory_limit_bytes`).
    """

    def __init__(
        self,
        registry: BuiltinRegistry | None = None,
        *,
        max_workers: int = 4,
        cpu_helpers: int = 2,
        cpu_memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
    ):
        self._registry = registry or default_registry
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="warden-builtin"
        )
        self.cpu = CpuBoundRunner(
            max_helpers=cpu_helpers,
            memory_limit_bytes=cpu_memory_limit_bytes,
            preload=self._registry.cpu_bound_modules,
        )

    def breaker_exempt(self, tool: ToolDefinition) -> bool:
        """Whether calls of `tool` skip the circuit breaker (GuardedExecutor asks). A breaker
        is shared by every worker so that a server or remote resource found failing by one
        is spared by all; a builtin registered `in_process` has none: what can fail it (a
        busy thread pool or helper of this worker) is this worker's own state, which another
        worker's breaker reading can only get wrong. Its calls then cost no Redis step."""
        try:
            return self._registry.get(tool.server).in_process
        except KeyError:
            return False

    def execute(
        self, tool: ToolDefinition, arguments: Mapping[str, Any], *, ctx: CallContext
    ) -> ToolOutcome:
        try:
            builtin = self._registry.get(tool.server)
        except KeyError:
            raise ToolFailed(f"no builtin tool {tool.server!r}", code="unknown_builtin") from None
        if builtin.cpu_bound:
            content = self.cpu.run(
                builtin.function, arguments, ctx=ctx, timeout_s=tool.timeout_s, name=tool.name
            )
            return ToolOutcome(ok=True, content=content)
        # Run in a copy of the caller's context so tracing context follows the call.
        context = contextvars.copy_context()
        future = self._pool.submit(
            context.run, builtin.function, arguments, BuiltinCall(ctx=ctx, timeout_s=tool.timeout_s)
        )
        try:
            content = future.result(timeout=tool.timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ToolTimeout(f"{tool.name} did not finish within {tool.timeout_s:g}s") from None
        except ToolError:
            raise
        except Exception as exc:
            logger.exception("builtin tool %s raised", tool.name)
            raise ToolFailed(f"{type(exc).__name__}: {exc}", code="builtin_error") from None
        return ToolOutcome(ok=True, content=content)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.cpu.close()


# ---------------------------------------------------------------------------------------------
# HTTP fetch

HTTP_FETCH_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "maxLength": 2048, "description": "http(s) URL to GET."}
    },
    "required": ["url"],
    "additionalProperties": False,
}
HTTP_FETCH_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "url": {"type": "string"},
        "status": {"type": "integer"},
        "content_type": {"type": "string"},
        "body": {"type": "string"},
        "truncated": {"type": "boolean"},
    },
    "required": ["url", "status", "body", "truncated"],
}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_RETRYABLE_STATUS = {429, 502, 503, 504}


class HostAllowlist:
    """Hosts a fetch may contact. Entries: "example.com" (any port), "example.com:8443" (that
    port only), "[::1]:8080", "*.example.com" (any subdomain, not the apex). Hosts match as
    written: the check happens before any DNS lookup, so "localhost" and "127.0.0.1" are
    different entries (and an allowlisted name is trusted to resolve where the operator meant).
    """

    def __init__(self, entries: Iterable[str]):
        self._any_port: set[str] = set()
        self._with_port: set[tuple[str, int]] = set()
        self._suffixes: set[str] = set()
        for raw in entries:
            entry = raw.strip().lower()
            if entry.startswith("*."):
                self._suffixes.add(entry[1:].rstrip("."))
                continue
            # httpx parses "host", "host:port", "[v6]" and "[v6]:port" as in a URL; a scheme
            # without a default port keeps an explicit ":80" from being normalised away.
            parsed = httpx.URL(f"allow://{entry}")
            host = parsed.host.rstrip(".")
            if parsed.port is None:
                self._any_port.add(host)
            else:
                self._with_port.add((host, parsed.port))

    def allows(self, url: httpx.URL) -> bool:
        if url.scheme not in _DEFAULT_PORTS:
            return False
        host = url.host.lower().rstrip(".")
        port = url.port or _DEFAULT_PORTS[url.scheme]
        return (
            host in self._any_port
            or (host, port) in self._with_port
            or any(host.endswith(suffix) for suffix in self._suffixes)
        )


EgressSource = EgressPolicy | Callable[[], EgressPolicy]


def make_http_fetch(
    allowed_hosts: Iterable[str],
    *,
    max_bytes: int = 256 * 1024,
    max_redirects: int = 5,
    egress: EgressSource = STRICT,
) -> BuiltinFunction:
    """The fetch function: GET `url`, following redirects only to allowed hosts.

    `egress` is the policy every connection is checked against, or a function returning it
    (read at each call, so the platform's current setting applies).
    """
    allowlist = HostAllowlist(allowed_hosts)

    def check(url: httpx.URL) -> None:
        if url.scheme not in _DEFAULT_PORTS:
            raise ToolArgumentsInvalid(
                f"only http and https URLs can be fetched, not {url.scheme!r}"
            )
        if not allowlist.allows(url):
            raise ToolFailed(
                f"{url.host} is not on this tool's host allowlist; nothing was fetched",
                code="host_not_allowed",
            )

    def fetch(arguments: Mapping[str, Any], call: BuiltinCall) -> dict[str, Any]:
        try:
            url = httpx.URL(str(arguments["url"]))
        except (httpx.InvalidURL, KeyError) as exc:
            raise ToolArgumentsInvalid(f"not a valid URL: {exc}") from None
        policy = egress() if callable(egress) else egress
        try:
            with guarded_client(
                policy,
                follow_redirects=False,
                timeout=call.timeout_s,
                headers={"User-Agent": "Warden-Fetch/1.0"},
            ) as client:
                for _ in range(max_redirects + 1):
                    check(url)
                    with client.stream("GET", url) as response:
                        location = response.headers.get("location")
                        if response.is_redirect and location:
                            url = response.url.join(location)
                            continue
                        if response.status_code in _RETRYABLE_STATUS:
                            raise ToolUnavailable(
                                f"{url.host} answered HTTP {response.status_code}",
                                code=f"http_{response.status_code}",
                                maybe_executed=False,
                            )
                        body = bytearray()
                        truncated = False
                        for chunk in response.iter_bytes():
                            body += chunk
                            if len(body) > max_bytes:
                                truncated = True
                                del body[max_bytes:]
                                break
                        return {
                            "url": str(response.url),
                            "status": response.status_code,
                            "content_type": response.headers.get("content-type", ""),
                            "body": body.decode(response.encoding or "utf-8", errors="replace"),
                            "truncated": truncated,
                        }
                raise ToolFailed(f"more than {max_redirects} redirects", code="too_many_redirects")
        except httpx.TimeoutException:
            raise ToolTimeout(f"fetching {url.host} timed out") from None
        except httpx.TransportError as exc:
            # The guard's refusal, a closed port, DNS, TLS or a service that does not speak
            # HTTP: one answer for all, or the tool would map the platform's network. The
            # operator log has the cause.
            egress_log.warning(
                "http_fetch to %s:%s failed: %s: %s",
                url.host,
                url.port,
                type(exc).__name__,
                exc,
                extra={"egress_host": url.host, "egress_cause": f"{type(exc).__name__}: {exc}"},
            )
            raise ToolUnavailable(
                f"cannot connect to {url.host}",
                code="connect_failed",
                maybe_executed=not isinstance(exc, httpx.ConnectError),
            ) from None

    return fetch


def register_http_fetch(
    registry: BuiltinRegistry,
    *,
    allowed_hosts: Iterable[str],
    name: str = "http_fetch",
    timeout_s: float = 15.0,
    **settings: Any,
) -> BuiltinTool:
    registry.register(
        name,
        make_http_fetch(allowed_hosts, **settings),
        description="Fetch a web page or API response with HTTP GET (allowlisted hosts only).",
        input_schema=HTTP_FETCH_INPUT_SCHEMA,
        output_schema=HTTP_FETCH_OUTPUT_SCHEMA,
        idempotent=True,
        risk_tier="medium",
        timeout_s=timeout_s,
    )
    return registry.get(name)
