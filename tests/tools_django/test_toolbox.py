"""The catalog-backed toolbox in turns run in-process: MCP, WASM and builtin tools, errors the
model is told about, per-call credentials checked by a real tool server."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from apps.agents import orchestrator, services
from apps.agents.adapters import Toolbox
from apps.agents.demo import DEMO_AGENT_TOOLS, seed_demo_agents
from apps.agents.models import ActionNode, Agent, SessionEvent, Turn, TurnStatus
from apps.tools import services as tool_services
from apps.tools.credentials import CredentialRefused, mint_credential
from apps.tools.execution import credential_check, credential_signing_key, resolve_tools
from apps.tools.models import McpServer, Tool
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World
from tests.tools_django.conftest import SecureServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatch")]


def run(agent: Agent, message: str, user: Any = None) -> Turn:
    turn = services.turn_enqueue(session=make_session(agent, user), message=message)
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    return turn


def tool_nodes(turn: Turn) -> list[ActionNode]:
    return list(ActionNode.objects.filter(turn=turn, kind="tool_call").order_by("position"))


def events(turn: Turn, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in SessionEvent.objects.filter(turn=turn, type=kind).order_by("id")]


def test_demo_agent_calls_the_time_server_and_the_wasm_tool(
    world: World, settings: Any, tmp_path: Path
) -> None:
    settings.WARDEN_TOOL_WORKSPACE_ROOT = str(tmp_path)
    seed_demo_agents(tenant=world.tenant_a)
    seed_demo_agents(tenant=world.tenant_a)  # idempotent: the next `make run` changes nothing
    assert McpServer.objects.filter(tenant=world.tenant_a).count() == 2
    # The git server reads a repository in the demo tenant's own workspace.
    assert (tmp_path / str(world.tenant_a.id) / "demo-repo" / ".git").is_dir()
    git = McpServer.objects.get(tenant=world.tenant_a, name="git")
    assert (git.template, git.args) == ("git", {"--repository": "demo-repo"})
    tools = {t.name: t for t in Tool.objects.filter(tenant=world.tenant_a)}
    for name in DEMO_AGENT_TOOLS:
        assert tools[name].is_available, name
    # Git tools that change the repository wait for an operator.
    assert not tools["git_commit"].enabled and not tools["git_reset"].enabled

    agent = Agent.objects.get(tenant=world.tenant_a, slug="demo-scripted")
    assert "scripted" in agent.name
    turn = run(agent, "count these five words please", world.alice)

    assert turn.status == TurnStatus.COMPLETED, turn.detail
    nodes = tool_nodes(turn)
    assert [n.inputs["tool"] for n in nodes] == ["memory_search", "get_current_time", "word_count"]
    assert all(n.status == "completed" for n in nodes)
    # The demo's memory was ingested, and the answer cites the document it found.
    (found,) = nodes[0].outputs["output"]["results"]
    assert found["title"].startswith("Warden handbook") and found["title"] in turn.final_answer
    assert nodes[1].outputs["output"]["timezone"] == "UTC"
    assert nodes[2].outputs["output"] == {"words": 5}
    assert '"timezone": "UTC"' in turn.final_answer and '{"words": 5}' in turn.final_answer


def test_tool_errors_reach_the_graph_the_stream_and_the_model(world: World) -> None:
    tool_services.tool_register_wasm(
        tenant=world.tenant_a, module="infinite_loop", approve=True, timeout_s=0.3
    )
    tool_services.tool_register_wasm(tenant=world.tenant_a, module="word_count", approve=True)
    script: list[dict[str, Any]] = [
        {"tool": "infinite_loop", "arguments": {}},
        {"tool": "word_count", "arguments": {"txt": "wrong field"}},
        {"final": "I was told: ${tool_results}"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["infinite_loop", "word_count"])
    turn = run(agent, "go")

    assert turn.status == TurnStatus.COMPLETED, turn.detail
    (looped,) = tool_nodes(turn)  # the invalid call never ran
    assert looped.status == "error"
    assert looped.outputs["error"].startswith("wasm_time_limit: ")
    (result,) = events(turn, "tool.result")
    assert result["ok"] is False and result["error"].startswith("wasm_time_limit")
    # Arguments failing the tool's schema are rejected before anything runs, and re-prompted.
    malformed = ActionNode.objects.get(turn=turn, kind="model_call", status="malformed")
    assert "txt" in malformed.outputs["error"] or "text" in malformed.outputs["error"]
    assert len(events(turn, "step.malformed")) == 1
    # The model saw the error (the scripted model echoes what it was told).
    assert "error: wasm_time_limit" in turn.final_answer


def test_catalog_rows_govern_builtins(world: World) -> None:
    tenant = world.tenant_a
    # Not in the catalog: resolves from the registry.
    assert set(resolve_tools(tenant_id=tenant.id, names=["clock_now", "calculator"])) == {
        "clock_now",
        "calculator",
    }
    # In the catalog but disabled: the row wins, the tool is not available.
    clock = tool_services.tool_register_builtin(tenant=tenant, name="clock_now")
    assert set(resolve_tools(tenant_id=tenant.id, names=["clock_now", "calculator"])) == {
        "calculator"
    }
    # Approved: available, with the catalog's governance (a tighter timeout here).
    tool_services.tool_update(tool=clock, enabled=True, timeout_s=1.5, risk_tier="medium")
    resolved = resolve_tools(tenant_id=tenant.id, names=["clock_now"])["clock_now"]
    assert resolved.definition.timeout_s == 1.5 and resolved.definition.risk_tier == "medium"
    # Another tenant's catalog is its own.
    other = tool_services.tool_register_builtin(tenant=world.tenant_b, name="calculator")
    assert not other.enabled
    assert "calculator" in resolve_tools(tenant_id=tenant.id, names=["calculator"])
    assert not resolve_tools(tenant_id=world.tenant_b.id, names=["calculator", "nope"])

    agent = make_agent(tenant, [{"final": "x"}], tools=["clock_now", "calculator", "nope"])
    turn = services.turn_enqueue(session=make_session(agent), message="hi")
    names = [spec.name for spec in Toolbox(agent.allowed_tools, turn=turn).list_specs()]
    assert names == ["clock_now", "calculator"]


def _secure_tool(
    tenant: Any, name: str, server: SecureServer, *, credential_header: bool = True
) -> McpServer:
    row = tool_services.mcp_server_save(
        tenant=tenant,
        name=name,
        transport="streamable_http",
        url=server.url,
        auth_secret=server.auth,
        credential_header="X-Warden-Credential" if credential_header else "",
    )
    tool_services.tool_discover(server=row, approve=True)
    # Discovery suggests `high` for tools without a read-only hint, and the default policy
    # sends high-risk calls to approval; these tests are about credentials, so the operator
    # rates them medium.
    for tool in row.tools.all():
        tool_services.tool_update(tool=tool, risk_tier="medium")
    return row


def test_credential_reaches_the_server_scoped_and_checked(
    world: World, secure_server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = secure_server_factory(tenant_id=str(world.tenant_a.id), resource="mcp:secure")
    _secure_tool(world.tenant_a, "secure", server)
    script: list[dict[str, Any]] = [
        {"tool": "secure_echo", "arguments": {"text": "hello"}},
        {"final": "Server said: ${tool_result_1}"},
    ]
    agent = make_agent(world.tenant_a, script, tools=["secure_echo"])
    turn = run(agent, "go", world.alice)

    assert turn.status == TurnStatus.COMPLETED, turn.detail
    (node,) = tool_nodes(turn)
    claims = node.outputs["output"]
    assert node.status == "completed", node.outputs
    assert claims["tenant"] == str(world.tenant_a.id)
    assert claims["session"] == str(turn.session_id)
    assert claims["resource"] == "mcp:secure"
    assert 0 < claims["lifetime_s"] <= 300
    assert claims["auth_ok"] is True  # the server's static secret went as a Bearer header
    # The token itself never reached the model, the graph or the stream.
    stream = str(list(SessionEvent.objects.filter(turn=turn).values_list("payload", flat=True)))
    graph = str(list(ActionNode.objects.filter(turn=turn).values_list("outputs", flat=True)))
    for text in (turn.final_answer, stream, graph):
        assert "eyJ" not in text  # no JWT
        assert server.auth not in text

    # Another tenant registering the same server: its credentials are not for this server.
    _secure_tool(world.tenant_b, "secure", server)
    foreign = run(make_agent(world.tenant_b, script, tools=["secure_echo"], slug="b"), "go")
    (refused,) = tool_nodes(foreign)
    assert refused.status == "error"
    assert refused.outputs["error"].startswith("tool_error: ")
    assert refused.outputs["error"].endswith("credential refused: wrong_tenant")
    assert "credential refused: wrong_tenant" in foreign.final_answer

    # The same server under another name: the credential is scoped to that name's resource.
    _secure_tool(world.tenant_a, "other", server)
    tool = Tool.objects.get(tenant=world.tenant_a, server__name="other", remote_name="secure_echo")
    assert tool.name == "other_secure_echo"  # the catalog name is the tenant's, and unique
    scoped = run(
        make_agent(
            world.tenant_a,
            [{"tool": tool.name, "arguments": {"text": "x"}}, {"final": "${tool_result_1}"}],
            tools=[tool.name],
            slug="scoped",
            endpoint_name="scoped",
        ),
        "go",
    )
    assert tool_nodes(scoped)[0].outputs["error"].endswith("credential refused: wrong_scope")

    # Presented back to the platform, an expired token is refused and audited.
    expired = mint_credential(
        signing_key=credential_signing_key(),
        tenant_id=str(world.tenant_a.id),
        session_id="s",
        tool="secure_echo",
        resource="mcp:secure",
        ttl_s=60,
        now=time.time() - 3600,
    )
    with caplog.at_level(logging.WARNING, logger="warden.audit"):
        with pytest.raises(CredentialRefused) as refused_expired:
            credential_check(
                token=expired,
                tenant_id=str(world.tenant_a.id),
                tool="secure_echo",
                resource="mcp:secure",
            )
    assert refused_expired.value.reason == "expired"
    audit = [r for r in caplog.records if r.name == "warden.audit"]
    assert audit and audit[-1].reason == "expired"  # type: ignore[attr-defined]
    assert expired not in caplog.text


def test_server_without_credential_delivery_never_gets_one(
    world: World, secure_server_factory: Any
) -> None:
    server = secure_server_factory(tenant_id=str(world.tenant_a.id), resource="mcp:plain")
    _secure_tool(world.tenant_a, "plain", server, credential_header=False)
    script: list[dict[str, Any]] = [
        {"tool": "secure_echo", "arguments": {"text": "x"}},
        {"final": "${tool_result_1}"},
    ]
    turn = run(make_agent(world.tenant_a, script, tools=["secure_echo"]), "go")
    assert tool_nodes(turn)[0].outputs["error"].endswith("credential refused: missing")
