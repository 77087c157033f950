"""The demo tenant's tools, agents and model endpoints, seeded by `manage.py seed_demo`.

The small local model can't be relied on to pick tools, so the walk-through
agent runs on the scripted model and says so in its name: it searches the tenant's
memory (a few handbook documents ingested here), calls the time MCP server and the
WASM word counter, streams an answer that cites the document found, and leaves an
action graph, on every run, deterministically.

Tools: the time MCP server (stdio template `time`), the git MCP server (stdio
template `git`, on a small repository `demo-repo` in the demo tenant's
workspace directory) and the WASM `word_count` tool. Discovery runs in this
process (`manage.py seed_demo`, the operator's own command: no worker is up
yet). The read-only ones are approved; the git tools that change
the repository stay pending approval, for the console to show. A discovery that
fails is logged, never fatal: `make run` must come up anyway.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from apps.agents.models import Agent
from apps.agents.services import agent_save
from apps.budgets.models import Budget, Period, Scope
from apps.core.exceptions import WardenError
from apps.llm.models import EndpointState, ModelEndpoint
from apps.llm.services import endpoint_save, endpoint_state_set
from apps.memory import services as memory_services
from apps.policies import services as policy_services
from apps.policies.models import Policy
from apps.tenants.models import Tenant
from apps.tools import services as tool_services
from apps.tools.executors.mcp_pool import allow_stdio_servers
from apps.tools.models import McpServer, Tool
from apps.tools.stdio import tenant_workspace

logger = logging.getLogger("warden.demo")

DEMO_SCRIPT: list[dict[str, Any]] = [
    {
        "tool": "memory_search",
        "arguments": {"query": "${last_user_message}", "k": 1, "namespace": "handbook"},
        "say": "First I'll look in the tenant's memory.",
    },
    {
        "tool": "get_current_time",
        "arguments": {"timezone": "UTC"},
        "say": "First I'll ask the time MCP server.",
    },
    {
        "tool": "word_count",
        "arguments": {"text": "${last_user_message}"},
        "say": "Now I'll count your words in the WASM sandbox.",
    },
    {
        "final": "(scripted demo) From memory, citing the document by its title: "
        "${tool_result_1}. The time server says ${tool_result_2}; the WASM word counter "
        "says ${tool_result_3} for your message: ${last_user_message}"
    },
]
DEMO_AGENT_TOOLS = ["memory_search", "get_current_time", "word_count", "git_status", "git_log"]
# The demo agent's tokens per session (seed_demo_budget): three turns of short messages fit
# (each carries the memory passage it retrieved, so the fourth turn's history is the longest).
DEMO_SESSION_BUDGET_TOKENS = 6200

# The demo tenant's policy on top of the default one: the demo agent's word count waits for a
# human (console, API or Slack) before it runs, so `make run` shows an approval end to end.
DEMO_POLICY_NAME = "demo-word-count-approval"
DEMO_POLICY_SOURCE = """\
# Demo: a human approves every word count the demo agent asks for.
package warden

import rego.v1

decision := {
	"allow": true,
	"require_approval": true,
	"reasons": ["the demo asks a human before counting words"],
	"obligations": [],
}
"""


def _endpoint(tenant: Tenant, name: str, **fields: Any) -> ModelEndpoint:
    existing = ModelEndpoint.objects.filter(tenant=tenant, name=name).first()
    if existing:
        if existing.options != fields.get("options", existing.options):
            # An older seed's script: bring the walk-through up to date.
            return endpoint_save(tenant=tenant, endpoint=existing, options=fields["options"])
        return existing
    return endpoint_save(tenant=tenant, name=name, **fields)


DEMO_REPO = "demo-repo"


def _demo_repository(tenant: Tenant) -> Path | None:
    """A small git repository for the git MCP server, in the tenant's workspace (created once,
    with one commit): the git template reads only repositories inside that workspace."""
    repo = tenant_workspace(tenant.id, create=True) / DEMO_REPO
    if (repo / ".git").exists():
        return repo
    git = shutil.which("git")
    if git is None:
        logger.warning("git is not installed: the demo git MCP server is skipped")
        return None
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "README.md").write_text(
        "# Demo repository\n\nThe demo agent's git MCP server reads this repository.\n"
    )
    identity = ["-c", "user.name=Warden demo", "-c", "user.email=demo@warden.invalid"]
    try:
        for command in (
            ["init", "-q"],
            ["add", "README.md"],
            ["commit", "-q", "-m", "Initial commit of the demo repository"],
        ):
            subprocess.run([git, "-C", str(repo), *identity, *command], check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("could not create the demo git repository: %s", exc)
        shutil.rmtree(repo, ignore_errors=True)
        return None
    return repo


def _server(
    tenant: Tenant, name: str, description: str, template: str, args: dict[str, str]
) -> McpServer | None:
    existing = McpServer.objects.filter(tenant=tenant, name=name).first()
    try:
        # An older seed's row (a command line, a repository under var/): bring it up to date.
        return tool_services.mcp_server_save(
            tenant=tenant,
            server=existing,
            name=name,
            description=description,
            transport="stdio",
            template=template,
            args=args,
            env={},
        )
    except WardenError as exc:
        logger.warning("demo MCP server %s not registered: %s", name, exc.message)
        return None


def _discover(server: McpServer, *, read_only: bool = False) -> None:
    """Discover, then approve the server's tools (only the read-only ones if asked).

    Approving also re-approves a tool whose schema changed (a new package version): the demo
    trusts the packages it installs; a real tenant's operator would look first.
    """
    try:
        tool_services.tool_discover(server=server)
    except WardenError as exc:
        logger.warning("demo discovery of %s failed: %s", server.name, exc.message)
        return
    # Only tools not approved as they are now: one an operator disabled stays disabled.
    for tool in Tool.objects.filter(server=server, missing=False):
        pending = tool.approved_schema_hash != tool.schema_hash
        if pending and (not read_only or tool.annotations.get("readOnlyHint") is True):
            tool_services.tool_approve(tool=tool)


# The demo tenant's long-term memory (namespace "handbook"): the demo agent's first step
# searches it and its answer cites the document found.
DEMO_MEMORY_NAMESPACE = "handbook"
DEMO_DOCUMENTS: list[tuple[str, str]] = [
    (
        "Warden handbook: approvals",
        "Risky tool calls wait for a human. An approver decides in the console, over the "
        "REST API or with one click in Slack; the decision records who approved and why. "
        "A rejected or expired approval never runs the tool.",
    ),
    (
        "Warden handbook: budgets",
        "Every agent session has a token budget. At 80 % a warning appears on the timeline; "
        "a turn that could cross the cap is stopped before its model call, with "
        "budget_exceeded.",
    ),
    (
        "Warden handbook: tools",
        "Agents call tools through MCP servers, WASM modules and builtins such as the clock, "
        "the calculator and memory search. Untrusted code runs only in the WASM sandbox; "
        "the word counter is a WASM tool.",
    ),
]


def seed_demo_memory(*, tenant: Tenant) -> None:
    """The demo documents, ingested into the demo tenant's memory. Idempotent (the same text
    is the same document); an embedder that is down leaves them queued, never fatal."""
    for title, text in DEMO_DOCUMENTS:
        try:
            memory_services.document_ingest(
                tenant=tenant,
                text=text,
                title=title,
                namespace=DEMO_MEMORY_NAMESPACE,
                metadata={"source": "demo"},
            )
        except WardenError as exc:
            logger.warning("demo document %s not ingested: %s", title, exc.message)
    try:
        memory_search = tool_services.tool_register_builtin(tenant=tenant, name="memory_search")
        if memory_search.approved_schema_hash != memory_search.schema_hash:
            tool_services.tool_approve(tool=memory_search)
    except WardenError as exc:
        logger.warning("demo memory_search tool not registered: %s", exc.message)


def seed_demo_tools(*, tenant: Tenant) -> None:
    # The operator's own command, run before any worker is up: it may start stdio servers.
    allow_stdio_servers("manage.py seed_demo")
    time_server = _server(
        tenant,
        "time",
        "Current time and time-zone conversion (the mcp-server-time package).",
        "time",
        {},
    )
    if time_server is not None:
        _discover(time_server)
    repo = _demo_repository(tenant)
    if repo is not None:
        git_server = _server(
            tenant,
            "git",
            f"Git on the demo repository {DEMO_REPO} in the tenant's workspace "
            "(the mcp-server-git package).",
            "git",
            {"--repository": DEMO_REPO},
        )
        if git_server is not None:
            # Read-only tools only: the ones that change the repository wait for an operator.
            _discover(git_server, read_only=True)
    try:
        word_count = tool_services.tool_register_wasm(tenant=tenant, module="word_count")
        if word_count.approved_schema_hash != word_count.schema_hash:
            tool_services.tool_approve(tool=word_count)
    except WardenError as exc:
        logger.warning("demo WASM tool not registered: %s", exc.message)


# A 135M model follows a short, concrete prompt much better than a general one, and it must
# be told, above all, to stop calling once a tool has answered: it otherwise repeats the call
# until max_steps. (The tools are listed by the loop; naming them here too made SmolLM2 call
# the calculator again after its result, in benchmarks/eval_local_agent.py.)
LOCAL_AGENT_PROMPT = (
    "You are a helpful assistant. Call a tool to compute or look up what you need. When a "
    "tool has returned a result, do not call it again: reply with final_answer holding the "
    "result."
)
OLD_LOCAL_AGENT_PROMPTS = (
    "You are a helpful assistant. Use a tool when it helps.",
    "You are a helpful assistant with two tools. For any arithmetic, call the calculator "
    'tool with the whole expression, like {"expression": "17 * 23"}. For the current date '
    'or time, call the clock_now tool, like {"timezone": "UTC"}. When a tool has answered, '
    "give its result as the final_answer. Otherwise answer directly.",
)
LOCAL_AGENT_MAX_STEPS = 4
# The local endpoint's grammar, narrowed for a tiny model (LocalLlamaProvider's options): the
# calculator's expression may hold only numbers, operators and parentheses. Without it
# SmolLM2 writes a paragraph ("} }}\n17 * 23 = 4096. So the answer is…") where the
# expression goes. Only this endpoint's grammar changes; the tool's schema is the same.
LOCAL_ENDPOINT_OPTIONS: dict[str, Any] = {
    "argument_patterns": {"calculator": {"expression": r"^[0-9(]([0-9 +*/().-]*[0-9)])?$"}},
}
LOCAL_AGENT_TOOLS = ["clock_now", "calculator"]
LOCAL_ENDPOINT = "local-model"


def _seed_local_endpoint(tenant: Tenant) -> ModelEndpoint | None:
    """The embedded model's endpoint, pointing at this run's port and not ready yet.

    `make run` sets WARDEN_LOCAL_LLM_URL and then starts the model's supervisor, which moves
    the state on (building → starting → ready). With WARDEN_LOCAL_LLM=off an endpoint from
    an earlier run is marked off, so its agent fails clearly instead of calling nothing.
    """
    existing = ModelEndpoint.objects.filter(tenant=tenant, name=LOCAL_ENDPOINT).first()
    local_url = os.environ.get("WARDEN_LOCAL_LLM_URL")
    if not local_url:
        if existing is not None and os.environ.get("WARDEN_LOCAL_LLM", "").lower() in (
            "off",
            "0",
            "false",
            "no",
        ):
            endpoint_state_set(
                endpoint=existing,
                state=EndpointState.OFF,
                detail="not served: WARDEN_LOCAL_LLM=off",
            )
        return None
    model = os.environ.get("WARDEN_LOCAL_LLM_MODEL", "smollm2")
    fields: dict[str, Any] = {
        "provider": "local",
        "model": model,
        "base_url": local_url,
        "tier": "small",
        "context_window": 4096,
        "supports_tools": False,
        "supports_json_schema": True,
        "allowed_sensitivities": ["public", "internal", "confidential"],
        "timeout_s": 120.0,
        "priority": 50,
        "options": LOCAL_ENDPOINT_OPTIONS,
    }
    # The port may differ from the last run: keep the endpoint pointing at this one.
    local = endpoint_save(tenant=tenant, endpoint=existing, name=LOCAL_ENDPOINT, **fields)
    return endpoint_state_set(
        endpoint=local,
        state=EndpointState.STARTING,
        detail="waiting for `make run` to start the local model",
    )


def seed_demo_agents(*, tenant: Tenant) -> list[Agent]:
    seed_demo_tools(tenant=tenant)
    seed_demo_memory(tenant=tenant)
    scripted = _endpoint(
        tenant,
        "scripted-demo",
        provider="scripted",
        model="scripted-demo",
        tier="small",
        supports_tools=True,
        allowed_sensitivities=["public", "internal", "confidential"],
        priority=100,
        options={"script": DEMO_SCRIPT},
    )
    agents = []
    demo = Agent.objects.filter(tenant=tenant, slug="demo-scripted").first()
    if demo is not None and demo.allowed_tools != DEMO_AGENT_TOOLS:
        agent_save(tenant=tenant, agent=demo, allowed_tools=DEMO_AGENT_TOOLS)
    if demo is None:
        agents.append(
            agent_save(
                tenant=tenant,
                name="Demo agent (scripted model)",
                slug="demo-scripted",
                description="Searches the tenant's memory, calls the time MCP server and "
                "the WASM word counter, then answers citing the document it found, "
                "deterministically on the scripted model.",
                system_prompt="You are Warden's demo agent. Use tools when they help.",
                model_tier="small",
                allowed_tools=DEMO_AGENT_TOOLS,
                max_steps=6,
                allowed_endpoints=[scripted],
            )
        )
    seed_demo_budget(tenant=tenant)
    local = _seed_local_endpoint(tenant)
    if local is not None:
        agent = Agent.objects.filter(tenant=tenant, slug="local-assistant").first()
        if agent is None:
            agents.append(
                agent_save(
                    tenant=tenant,
                    name=f"Assistant (local {local.model}, no API key)",
                    slug="local-assistant",
                    description="A tiny local model served by llama.cpp, with "
                    "JSON-schema-constrained steps. Joins when its endpoint is ready.",
                    system_prompt=LOCAL_AGENT_PROMPT,
                    model_tier="small",
                    allowed_tools=LOCAL_AGENT_TOOLS,
                    max_steps=LOCAL_AGENT_MAX_STEPS,
                    allowed_endpoints=[local],
                )
            )
        elif agent.system_prompt in OLD_LOCAL_AGENT_PROMPTS:
            agent_save(tenant=tenant, agent=agent, system_prompt=LOCAL_AGENT_PROMPT)
    return agents


def seed_demo_budget(*, tenant: Tenant) -> Budget | None:
    """The demo agent's session budget: a short conversation fits, and about the fourth turn
    of one session (with short messages) is stopped cleanly, `budget_exceeded`, before a
    model call that could cross it, after a `budget.warning` at 80 %. Each call holds its prompt's
    bound plus the 1024-token output allowance, so the cap bites at a hold, not at a spend.
    Idempotent; an operator's edits are kept."""
    demo = Agent.objects.filter(tenant=tenant, slug="demo-scripted").first()
    if (
        demo is None
        or Budget.objects.filter(tenant=tenant, scope=Scope.SESSION, agent_id=demo.id).exists()
    ):
        return None
    return Budget.objects.create(
        tenant=tenant,
        scope=Scope.SESSION,
        agent_id=demo.id,
        period=Period.SESSION,
        max_tokens=DEMO_SESSION_BUDGET_TOKENS,
        obligations=[],  # warn only: the scripted demo answers the same way on any tier
    )


def seed_demo_policies(*, tenant: Tenant) -> Policy | None:
    """The demo's approval policy: the demo agent's `word_count` calls need approval.
    Idempotent; an operator's later edits (a new version) are kept."""
    if Policy.objects.filter(tenant=tenant, name=DEMO_POLICY_NAME).exists():
        return None
    return policy_services.policy_create(
        tenant=tenant,
        name=DEMO_POLICY_NAME,
        description="Demo: the scripted demo agent's word counts wait for a human's approval.",
        source=DEMO_POLICY_SOURCE,
        agent_slug="demo-scripted",
        tool_name="word_count",
        check=False,  # shipped with the demo and tested (tests/policies/test_demo.py)
    )
