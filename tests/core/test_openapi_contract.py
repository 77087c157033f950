"""The OpenAPI schema is a contract: schemathesis holds every operation of the live server to it.

daphne serves the real ASGI app on the test database (through tests/core/contract_server.py,
which lets it reach loopback only). The schema is the one `/api/v1/schema/` serves (built in
this process, so pytest can collect one test per operation; a test checks the server serves
the same). For every operation schemathesis sends the schema's examples, its coverage cases
(each keyword's boundaries, valid and not) and a few generated requests, then runs workflows
along the links it infers between operations, with all of its checks: no 5xx, documented
status codes, content types, headers and bodies, valid data accepted, invalid data refused,
authentication not ignored, undocumented methods answered 405 with `Allow`, a deleted object
gone, a created one found.

The requests authenticate with a real admin API key of a tenant that has one of everything, and
path ids mostly name those objects (see `_aim`), so operations are tested on what they find,
not only on 404s. Requests that destroy something (DELETE, revoke, close, cancel) get their own
objects, so the objects the other operations look for are still there.

Run it alone: `make test PYTEST_ARGS="tests/core/test_openapi_contract.py"`.
"""

from __future__ import annotations

import copy
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from schemathesis.core.failures import ServerError
from schemathesis.openapi.checks import RejectedPositiveData, UseAfterFree

from apps.agents import services as agent_services
from apps.agents.models import ActionNode
from apps.budgets.models import UsageRecord
from apps.budgets.services.budgets import budget_save
from apps.llm.services import endpoint_save
from apps.tenants import services as tenant_services
from apps.tenants.models import Role
from apps.tools import services as tool_services
from tests.conftest import LiveServer, _test_env
from tests.core.openapi import served_schema
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.tools.conftest import RunningServer, start_server

# The data lives in committed rows (module fixture below); the mark makes pytest-django set
# up the test database even when this module runs alone.
pytestmark = pytest.mark.django_db

API = "/api/v1"

# Examples per operation for the fuzzing phase; the coverage phase adds its own cases.
MAX_EXAMPLES = 10
# Workflows (sequences of linked operations) the stateful test runs.
WORKFLOWS = 30
SEED = 20240909


@dataclass
class ContractWorld:
    """Ids of the contract tenant's objects, by path parameter name: `live` ones for
    operations that read or change, `doomed` ones for operations that destroy."""

    key: str
    live: dict[str, list[str]] = field(default_factory=dict)
    doomed: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, obj: Any, *, doomed: bool = False) -> None:
        (self.doomed if doomed else self.live).setdefault(name, []).append(str(obj.id))


def _build_world(mcp_url: str) -> ContractWorld:
    tenant = TenantFactory(name="Contract", slug="contract")
    owner = UserFactory(username="contract-owner")
    member = UserFactory(username="contract-member")
    leaving = UserFactory(username="contract-leaving")
    owner_membership = MembershipFactory(tenant=tenant, user=owner, role=Role.OWNER)
    member_membership = MembershipFactory(tenant=tenant, user=member, role=Role.MEMBER)
    leaving_membership = MembershipFactory(tenant=tenant, user=leaving, role=Role.VIEWER)
    # The key the requests use: never one of the ids below, so nothing revokes it.
    _, raw = tenant_services.api_key_create(
        tenant=tenant, name="contract", scopes=["admin"], created_by=owner
    )
    world = ContractWorld(key=raw)
    world.add("membership_id", owner_membership)
    world.add("membership_id", member_membership)
    world.add("membership_id", leaving_membership, doomed=True)
    for doomed in (False, True):
        key, _ = tenant_services.api_key_create(tenant=tenant, name="other", scopes=["read"])
        world.add("key_id", key, doomed=doomed)
        invitation, _ = tenant_services.invitation_create(
            tenant=tenant, role=Role.MEMBER, actor_roles={Role.OWNER}, email="x@example.com"
        )
        world.add("invitation_id", invitation, doomed=doomed)

    endpoint = endpoint_save(
        tenant=tenant,
        name="scripted",
        provider="scripted",
        model="scripted",
        options={"script": [{"final": "Done."}]},
    )
    world.add("endpoint_id", endpoint)
    world.add(
        "endpoint_id",
        endpoint_save(tenant=tenant, name="spare", provider="scripted", model="scripted"),
        doomed=True,
    )
    agent = agent_services.agent_save(
        tenant=tenant, name="Agent", slug="agent", allowed_endpoints=[endpoint]
    )
    world.add("agent_id", agent)
    spare_agent = agent_services.agent_save(tenant=tenant, name="Spare", slug="spare")
    world.add("agent_id", spare_agent, doomed=True)
    for doomed in (False, True):
        session = agent_services.session_create(tenant=tenant, agent=agent, user=owner)
        world.add("session_id", session, doomed=doomed)
        turn = agent_services.turn_enqueue(session=session, message="hello", requested_by=owner)
        world.add("turn_id", turn, doomed=doomed)
    live_turn_id = world.live["turn_id"][0]
    ActionNode.objects.create(
        tenant=tenant,
        turn_id=live_turn_id,
        node_id="step-0",
        position=1,
        kind="model",
        status="done",
        step_index=0,
        outputs={"text": "Done."},
        scratchpad={"thought": "easy"},
    )

    # A real MCP server (the server may reach it: WARDEN_EGRESS_ALLOW), so discovery succeeds.
    for name, doomed in (("demo", False), ("spare", True)):
        server = tool_services.mcp_server_save(
            tenant=tenant, name=name, transport="streamable_http", url=mcp_url
        )
        world.add("server_id", server, doomed=doomed)
    world.add("tool_id", tool_services.tool_register_builtin(tenant=tenant, name="calculator"))

    # Budgets, and ledger rows for /usage and the budgets' figures to sum.
    world.add("budget_id", budget_save(tenant=tenant, scope="tenant", max_cost=Decimal("10")))
    world.add("budget_id", budget_save(tenant=tenant, scope="session", max_tokens=40_000))
    world.add(
        "budget_id",
        budget_save(tenant=tenant, scope="tenant", period="month", max_tokens=10**6),
        doomed=True,
    )
    for n, (user, estimated) in enumerate(((owner, False), (member, True), (None, False))):
        UsageRecord.objects.create(
            tenant=tenant,
            reservation_id=f"contract-{n}@1",
            session_id=world.live["session_id"][0],
            turn_id=live_turn_id,
            agent_id=agent.id,
            agent_slug=agent.slug,
            user=user,
            endpoint_name="scripted",
            model="scripted",
            input_tokens=100 * (n + 1),
            output_tokens=10,
            cost=Decimal("0.0125"),
            estimated=estimated,
        )
    return world


@pytest.fixture(scope="module")
def mcp_demo() -> Iterator[RunningServer]:
    server = start_server("streamable-http")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def contract_world(
    django_db_setup: None, django_db_blocker: Any, mcp_demo: RunningServer
) -> Iterator[ContractWorld]:
    """The tenant's objects, committed so the server process sees them; flushed afterwards,
    as pytest-django does after a transactional test."""
    with django_db_blocker.unblock():
        world = _build_world(mcp_demo.url)
    yield world
    with django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(scope="module")
def contract_server(django_db_setup: None, mcp_demo: RunningServer) -> Iterator[str]:
    env = {
        **_test_env(),
        # Thousands of requests a minute from one key and one address: the throttles are
        # tested in tests/security; here they would answer everything with 429. Counters under
        # their own prefix, so those of other tests' servers are untouched.
        "WARDEN_API_RATE_PER_PRINCIPAL": "1000000/minute",
        "WARDEN_API_RATE_PER_ADDRESS": "1000000/minute",
        "WARDEN_API_AUTH_FAILURE_RATE": "1000000/minute",
        "WARDEN_CACHE_KEY_PREFIX": f"contract-{uuid.uuid4().hex[:8]}",
        "WARDEN_EGRESS_ALLOW": f"127.0.0.1:{mcp_demo.port}",
        # A stdio discovery waits for a worker; none need run here.
        "WARDEN_MCP_DISCOVERY_TIMEOUT_SECONDS": "1",
    }
    server = LiveServer(env, module="tests.core.contract_server")
    yield server.url
    server.stop()


schema_dict = served_schema()
SCHEMATHESIS_CONFIG: dict[str, Any] = {
    "seed": SEED,
    "request-timeout": 20,
    "generation": {
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,
        "database": "none",
    },
    "operations": [
        {
            # With follow (the default) the stream never ends: schemathesis reads it
            # until it has this many events or this many seconds pass.
            "include-path": f"{API}/sessions/{{session_id}}/events",
            "max-stream-events": 1,
            "request-timeout": 1.5,
        }
    ],
}


schema = schemathesis.openapi.from_dict(
    schema_dict, config=schemathesis.Config.from_dict(SCHEMATHESIS_CONFIG)
)

# Refusals of schema-valid requests for reasons a JSON Schema can't state (a date in the
# future, one field that needs another, an id that must name an object of the tenant, the
# stored object's state): schemathesis's positive_data_acceptance check would call them
# failures. Only these codes are accepted, only on these operations; any other 400 for valid
# input still fails.
_MCP_SERVER_RULES = {
    "invalid_mcp_server",
    "template_unknown",
    *(
        f"{kind}_{what}"
        for kind in ("argument", "env")
        for what in ("not_allowed", "invalid", "missing")
    ),
}
_SEMANTIC_REFUSALS: dict[str, set[str]] = {
    # Anywhere: a NUL or a lone surrogate in a string (PostgreSQL can't store them).
    "*": {"invalid_characters"},
    f"POST {API}/agents": {"unknown_endpoint"},
    # A budget its scope can't keep (a period it doesn't have, a target it misses or doesn't
    # take, no cap, an obligation twice), or naming an agent or user the tenant doesn't have.
    f"POST {API}/budgets": {"invalid_budget", "unknown_agent", "unknown_user"},
    f"PATCH {API}/budgets/{{budget_id}}": {"invalid_budget"},
    f"PATCH {API}/agents/{{agent_id}}": {"unknown_endpoint"},
    f"POST {API}/api-keys": {"expiry_in_past"},
    f"POST {API}/invitations": {"expiry_in_past", "expiry_too_far"},
    f"POST {API}/mcp-servers": _MCP_SERVER_RULES,
    f"PATCH {API}/mcp-servers/{{server_id}}": _MCP_SERVER_RULES,
    f"POST {API}/model-endpoints": {"invalid_endpoint"},
    f"PATCH {API}/model-endpoints/{{endpoint_id}}": {"invalid_endpoint"},
    # A source the Rego compiler refuses (with its line and column), or too large in bytes.
    f"POST {API}/policies": {"policy_invalid", "policy_too_large"},
    f"PATCH {API}/policies/{{policy_id}}": {"policy_invalid", "policy_too_large"},
    # A session id the tenant does not have; a policy with no version to test.
    f"POST {API}/policies/{{policy_id}}/what-if": {"unknown_session", "policy_unversioned"},
    f"POST {API}/sessions": {"sensitivity_too_low"},
    # A prompt too long for every endpoint the agent may use (issue 11's admission).
    f"POST {API}/sessions/{{session_id}}/turns": {
        "empty_message",
        "message_too_long",
        "prompt_too_long",
    },
    f"PATCH {API}/tools/{{tool_id}}": {"invalid_tool"},
    # A custom pattern the regex engine refuses, or one that could run away or match
    # everything; a name a built-in kind or another pattern has.
    f"PATCH {API}/tenant/redaction": {
        "pattern_invalid",
        "pattern_matches_empty",
        "pattern_has_groups",
        "pattern_global_flags",
        "pattern_catastrophic",
        "pattern_name_taken",
    },
    # What the upload holds (an image, binary bytes, nothing) and the JSON inside a string
    # (multipart `metadata`, the search's `filter`) must be an object.
    f"POST {API}/memory/documents": {
        "unsupported_type",
        "binary_file",
        "empty_document",
        "invalid_memory_query",
    },
    f"GET {API}/memory/search": {"invalid_memory_query"},
    # A `from`/`to` of the documented shape that is no real instant (month 13), or a window
    # that isn't one (backwards, empty, over 366 days).
    f"GET {API}/usage": {"invalid_range"},
}
# Designed 5xx answers: the upstream MCP server a fuzzed request pointed the server at does
# not answer (502), or no worker runs stdio discoveries here (503). Documented; not bugs.
_UPSTREAM_FAILURES: dict[str, set[str]] = {
    f"POST {API}/mcp-servers/{{server_id}}/discover": {"discovery_failed", "discovery_unavailable"}
}


# DELETE on these revokes: the row stays readable as the record (documented on the
# operations), so a GET after the DELETE finding it is not a use-after-free.
_REVOKED_NOT_DELETED = {
    f"DELETE {API}/api-keys/{{key_id}}",
    f"DELETE {API}/invitations/{{invitation_id}}",
}


# Rules between fields that a serializer enforces, answered `validation_error` with their
# message (the stable code of every serializer refusal).
_SEMANTIC_RULES: dict[str, set[str]] = {
    # Exactly one of `sessions` and `since`: neither, or both, is refused.
    f"POST {API}/policies/{{policy_id}}/what-if": {'Give either "sessions" or "since".'},
}


def _error_field(response: Any, name: str) -> str | None:
    """`code` or `message` of an error body (None when the body is not one)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get(name) if isinstance(body, dict) else None


@schema.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but the refusals listed above."""
    label = f"{case.method.upper()} {case.operation.path}"
    code = _error_field(response, "code")
    if (
        response.status_code == 400
        and not response.content
        and str(getattr(case, "media_type", "") or "").startswith("multipart/")
    ):
        # Daphne's HTTP layer (Twisted) parses multipart bodies itself and answers one it
        # can't parse (no parts at all) with a bare 400 before the request reaches Django.
        return False
    if isinstance(failure, RejectedPositiveData) and response.status_code == 400:
        if code == "validation_error" and _error_field(response, "message") in _SEMANTIC_RULES.get(
            label, set()
        ):
            return False
        return code not in _SEMANTIC_REFUSALS["*"] | _SEMANTIC_REFUSALS.get(label, set())
    if isinstance(failure, ServerError) and response.status_code in (502, 503):
        return code not in _UPSTREAM_FAILURES.get(label, set())
    if isinstance(failure, UseAfterFree):
        return failure.operation not in _REVOKED_NOT_DELETED
    return True


_DESTRUCTIVE_SUFFIXES = ("/revoke", "/close", "/cancel")


def _aim(case: Any, world: ContractWorld) -> None:
    """Point most generated ids at the tenant's objects: a valid UUID (what the schema asks
    for) is replaced by a real id unless it is a multiple of 4, which stays a 404."""
    destroys = case.method == "DELETE" or case.path.endswith(_DESTRUCTIVE_SUFFIXES)
    pools = world.doomed if destroys else world.live
    for name, value in list((case.path_parameters or {}).items()):
        try:
            generated = uuid.UUID(str(value))
        except ValueError:
            continue  # a malformed id: the case is about that
        ids = pools.get(name) or world.live.get(name)
        if ids and generated.int % 4:
            case.path_parameters[name] = ids[generated.int % len(ids)]


def _sends_undocumented_parameters(case: Any) -> bool:
    """Whether the case adds a header, query parameter or cookie its operation does not
    document, expecting a refusal. HTTP servers ignore headers and cookies they don't know
    (clients and proxies add them), and so does this API with query parameters; only request
    bodies are closed (`additionalProperties: false`), and those cases stay."""
    operation = schema_dict["paths"][case.operation.path][case.operation.method.lower()]
    documented = {(p["in"], p["name"].lower()) for p in operation.get("parameters", [])} | {
        ("header", "authorization"),  # the security schemes'
        ("cookie", "sessionid"),
        ("header", "content-type"),  # the media type cases (415) stay
    }
    sent = (
        [("header", name.lower()) for name in (case.headers or {})]
        + [("query", name.lower()) for name in (case.query or {})]
        + [("cookie", name.lower()) for name in (case.cookies or {})]
    )
    return any(item not in documented for item in sent)


@schema.parametrize()
def test_every_operation_keeps_the_contract(
    case: Any, contract_server: str, contract_world: ContractWorld
) -> None:
    if _sends_undocumented_parameters(case):
        return
    _aim(case, contract_world)
    case.call_and_validate(
        base_url=contract_server, headers={"Authorization": f"Bearer {contract_world.key}"}
    )


# The same schema with the links schemathesis infers between operations (a created agent's
# id leads to GET/PATCH/DELETE /agents/{agent_id}, a session's to its turns, …), for
# workflows: create, read, change, delete, then check the deleted object is gone and a
# created one can be found.
workflow_schema = schemathesis.openapi.from_dict(
    copy.deepcopy(schema_dict), config=schemathesis.Config.from_dict(SCHEMATHESIS_CONFIG)
)


def test_workflows_keep_the_contract(contract_server: str, contract_world: ContractWorld) -> None:
    workflow_schema.hook(filter_failure)
    assert workflow_schema.analysis.inject_links() > 0
    headers = {"Authorization": f"Bearer {contract_world.key}"}
    failures: list[str] = []
    finished = 0

    class Workflow(workflow_schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": contract_server, "headers": headers}

        def validate_response(self, response: Any, case: Any, *args: Any, **kwargs: Any) -> None:
            # Collected, not raised: Hypothesis would replay a failing workflow against a
            # server whose state has moved on, and report that as flakiness instead.
            try:
                super().validate_response(response, case, *args, **kwargs)
            except AssertionError as exc:
                failures.append(f"{case.method} {case.formatted_path}: {exc}")

        def teardown(self) -> None:
            nonlocal finished
            finished += 1
            super().teardown()

    # Which steps a workflow can take depends on what the server answered, so Hypothesis may
    # find its choices no longer line up with an earlier run's and stop with Flaky; then, as
    # schemathesis's own runner does, start again with the next seed. Generated only (no
    # shrinking): a failing workflow can't be replayed against a server that moved on.
    for attempt in range(5):
        random.seed(SEED + attempt)
        try:
            Workflow.run(
                settings=hypothesis.settings(
                    max_examples=WORKFLOWS - finished,
                    stateful_step_count=8,
                    phases=[hypothesis.Phase.generate],
                    database=None,
                    deadline=None,
                    suppress_health_check=list(hypothesis.HealthCheck),
                )
            )
        except hypothesis.errors.Flaky:
            pass
        if finished >= WORKFLOWS:
            break
    assert not failures, "\n\n".join(failures)
    assert finished >= WORKFLOWS


def _api_routes(resolver: URLResolver | None = None, prefix: str = "") -> list[str]:
    routes: list[str] = []
    for entry in (resolver or get_resolver()).url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            routes += _api_routes(entry, pattern)
        elif isinstance(entry, URLPattern) and pattern.startswith("api/"):
            routes.append(pattern)
    return routes


def _as_openapi_path(route: str) -> str:
    # Django's "<uuid:session_id>" is OpenAPI's "{session_id}".
    parts = [
        "{" + p.split(":")[-1].rstrip(">") + "}" if p.startswith("<") else p
        for p in route.split("/")
    ]
    return "/" + "/".join(parts)


def test_the_live_server_serves_the_tested_schema(contract_server: str) -> None:
    served = httpx.get(f"{contract_server}{API}/schema/?format=json", timeout=20)
    assert served.status_code == 200
    assert served.json() == served_schema()


def test_the_schema_covers_every_api_route() -> None:
    """A route the schema leaves out is a route the contract test never sends a request to."""
    documented = set(served_schema()["paths"])
    routes = {_as_openapi_path(r) for r in _api_routes()}
    served_by_the_schema_views = {f"{API}/schema/", f"{API}/docs/"}
    assert routes - served_by_the_schema_views - documented == set()
    assert f"{API}/sessions/{{session_id}}/events" in documented


@pytest.mark.parametrize(
    "path",
    [
        f"{API}/no-such-route",
        f"{API}/agents/not-a-uuid",
        f"{API}/sessions/{uuid.uuid4()}/events/extra",
        "/api/v2/agents",
    ],
)
def test_unknown_api_paths_are_json_404s_on_the_live_server(
    contract_server: str, path: str
) -> None:
    response = httpx.get(f"{contract_server}{path}", timeout=20)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "not_found"
