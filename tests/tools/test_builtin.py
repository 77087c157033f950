"""Builtin tools: the registry, and the allowlisted HTTP fetch against a local HTTP server."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from apps.core.egress import EgressPolicy
from apps.tools.executors.base import RetryPolicy, ToolFailed
from apps.tools.executors.builtin import (
    BuiltinExecutor,
    BuiltinRegistry,
    HostAllowlist,
    register_http_fetch,
)
from apps.tools.executors.wrapper import GuardedExecutor

# The site listens on loopback, which the egress guard refuses unless allowed.
LOOPBACK = EgressPolicy(("127.0.0.1",))


class Site(ThreadingHTTPServer):
    """A tiny website on 127.0.0.1 that logs every request path it receives."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]


class Handler(BaseHTTPRequestHandler):
    server: Site

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        port = self.server.port
        routes = {
            "/": (200, {}, b"hello from the allowlisted host"),
            "/redirect-in": (302, {"Location": "/"}, b""),
            "/redirect-out": (302, {"Location": f"http://localhost:{port}/secret"}, b""),
            "/busy": (503, {}, b"try later"),
            "/big": (200, {}, b"y" * 100_000),
        }
        status, headers, body = routes.get(self.path, (404, {}, b"not found"))
        self.send_response(status)
        for name, value in {"Content-Type": "text/plain", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def fetch(sleeps):
    registry = BuiltinRegistry()
    tool = register_http_fetch(
        registry, allowed_hosts=["127.0.0.1"], max_bytes=10_000, egress=LOOPBACK
    )
    guarded = GuardedExecutor({"builtin": BuiltinExecutor(registry)}, sleep=sleeps)
    definition = tool.definition()

    def call(url, ctx, **overrides):
        from dataclasses import replace

        return guarded.execute(replace(definition, **overrides), {"url": url}, ctx=ctx)

    return call


def test_fetch_from_an_allowlisted_host(site, fetch, ctx):
    outcome = fetch(f"http://127.0.0.1:{site.port}/", ctx)
    assert outcome.ok, outcome.error_message
    assert outcome.content["status"] == 200
    assert outcome.content["body"] == "hello from the allowlisted host"
    assert site.paths == ["/"]


def test_fetch_to_a_host_not_on_the_allowlist_never_connects(site, fetch, ctx):
    outcome = fetch(f"http://localhost:{site.port}/", ctx)
    assert (outcome.ok, outcome.error_code) == (False, "host_not_allowed")
    assert "localhost" in outcome.model_text
    assert site.paths == []


def test_redirect_to_a_host_not_on_the_allowlist_is_not_followed(site, fetch, ctx):
    outcome = fetch(f"http://127.0.0.1:{site.port}/redirect-out", ctx)
    assert outcome.error_code == "host_not_allowed"
    assert site.paths == ["/redirect-out"]


def test_redirect_within_the_allowlist_is_followed(site, fetch, ctx):
    outcome = fetch(f"http://127.0.0.1:{site.port}/redirect-in", ctx)
    assert outcome.ok and outcome.content["url"] == f"http://127.0.0.1:{site.port}/"
    assert site.paths == ["/redirect-in", "/"]


def test_allowlist_entry_with_a_port_allows_only_that_port(site, sleeps, ctx):
    registry = BuiltinRegistry()
    tool = register_http_fetch(
        registry, allowed_hosts=[f"127.0.0.1:{site.port + 1}"], egress=LOOPBACK
    )
    guarded = GuardedExecutor({"builtin": BuiltinExecutor(registry)}, sleep=sleeps)
    outcome = guarded.execute(tool.definition(), {"url": f"http://127.0.0.1:{site.port}/"}, ctx=ctx)
    assert outcome.error_code == "host_not_allowed" and site.paths == []


def test_non_http_schemes_are_refused(fetch, ctx):
    assert fetch("file:///etc/passwd", ctx).error_code == "arguments_invalid"


def test_overloaded_host_is_retried_then_reported(site, fetch, ctx, sleeps):
    outcome = fetch(
        f"http://127.0.0.1:{site.port}/busy",
        ctx,
        retry=RetryPolicy(max_attempts=3, base_delay_s=0.1),
    )
    assert (outcome.error_code, outcome.attempts) == ("http_503", 3)
    assert site.paths == ["/busy"] * 3 and len(sleeps.delays) == 2


def test_large_body_is_cut_at_the_fetch_limit(site, fetch, ctx):
    outcome = fetch(f"http://127.0.0.1:{site.port}/big", ctx)
    assert outcome.content["truncated"] is True and len(outcome.content["body"]) == 10_000


def test_registry_runs_registered_builtins_with_the_call_context(ctx, sleeps):
    registry = BuiltinRegistry()

    @registry.register(
        "memory_search",
        description="Search the agent's memory.",
        input_schema={"type": "object", "properties": {"query": {"type": "string"}}},
        idempotent=True,
    )
    def memory_search(arguments, call):
        return {"query": arguments["query"], "tenant": call.ctx.tenant_id}

    with pytest.raises(ValueError, match="already registered"):
        registry.register("memory_search", memory_search, description="", input_schema={})

    guarded = GuardedExecutor({"builtin": BuiltinExecutor(registry)}, sleep=sleeps)
    (definition,) = registry.definitions()
    assert (definition.source, definition.server, definition.idempotent) == (
        "builtin",
        "memory_search",
        True,
    )
    outcome = guarded.execute(definition, {"query": "invoices"}, ctx=ctx)
    assert outcome.content == {"query": "invoices", "tenant": "tenant-a"}


def test_builtin_errors_and_overruns_are_reported(ctx, sleeps):
    registry = BuiltinRegistry()
    release = threading.Event()
    schema = {"type": "object"}
    registry.register("broken", lambda a, c: 1 / 0, description="", input_schema=schema)
    registry.register(
        "refuses",
        lambda a, c: (_ for _ in ()).throw(ToolFailed("no such record", code="not_found")),
        description="",
        input_schema=schema,
    )
    registry.register(
        "stuck", lambda a, c: release.wait(30), description="", input_schema=schema, timeout_s=0.2
    )
    executor = BuiltinExecutor(registry)
    guarded = GuardedExecutor({"builtin": executor}, sleep=sleeps)
    by_name = {d.name: d for d in registry.definitions()}
    try:
        broken = guarded.execute(by_name["broken"], {}, ctx=ctx)
        assert broken.error_code == "builtin_error" and "ZeroDivisionError" in broken.error_message
        assert guarded.execute(by_name["refuses"], {}, ctx=ctx).error_code == "not_found"
        assert guarded.execute(by_name["stuck"], {}, ctx=ctx).error_code == "timeout"
    finally:
        release.set()
        executor.shutdown()


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://docs.example.com/page", True),
        ("https://docs.example.com:8443/page", True),
        ("http://api.example.org:8080/", True),
        ("http://api.example.org/", False),
        ("http://a.corp.example/", True),
        ("http://corp.example/", False),
        ("http://evilcorp.example/", False),
        ("http://docs.example.com@evil.test/", False),
        ("http://[::1]:9000/", True),
        ("http://[::1]:9001/", False),
        ("ftp://docs.example.com/", False),
    ],
)
def test_host_allowlist_matching(url, allowed):
    allowlist = HostAllowlist(
        ["docs.example.com", "api.example.org:8080", "*.corp.example", "[::1]:9000"]
    )
    assert allowlist.allows(httpx.URL(url)) is allowed
