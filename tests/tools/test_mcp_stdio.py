"""MCP over stdio against real servers: mcp-server-time, mcp-server-git, and the demo server."""

import os
import signal
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from apps.tools.executors.base import (
    RetryPolicy,
    ToolDiscoveryError,
    ToolUnavailable,
)
from apps.tools.executors.mcp import McpExecutor, McpServerConfig, discover, tool_definition
from apps.tools.executors.wrapper import GuardedExecutor

from .conftest import PYTHON, SERVERS, demo_stdio_config


def guarded(config: McpServerConfig, pool, sleeps) -> GuardedExecutor:
    return GuardedExecutor({"mcp": McpExecutor({config.key: config}, pool=pool)}, sleep=sleeps)


def by_name(entries):
    return {entry["name"]: entry for entry in entries}


def test_time_server_discovery_and_calls(pool, ctx, sleeps):
    config = McpServerConfig(
        key="time", transport="stdio", command=PYTHON, args=("-m", "mcp_server_time")
    )
    tools = by_name(discover(config, pool=pool))
    assert {"get_current_time", "convert_time"} <= set(tools)
    current = tools["get_current_time"]
    assert current["input_schema"]["required"] == ["timezone"]
    assert current["suggested_risk_tier"] == "low" and current["suggested_idempotent"]
    assert len(current["schema_hash"]) == 64

    executor = guarded(config, pool, sleeps)
    outcome = executor.execute(tool_definition(current), {"timezone": "Asia/Tokyo"}, ctx=ctx)
    assert outcome.ok, outcome.error_message
    assert outcome.content["timezone"] == "Asia/Tokyo"
    assert (
        datetime.fromisoformat(outcome.content["datetime"]).utcoffset().total_seconds() == 9 * 3600
    )
    assert '"timezone":"Asia/Tokyo"' in outcome.model_text

    converted = executor.execute(
        tool_definition(tools["convert_time"]),
        {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Kolkata"},
        ctx=ctx,
    )
    assert converted.ok and converted.content["target"]["datetime"].endswith("17:30:00+05:30")

    # A tool error from the server is reported, not retried.
    bad = executor.execute(tool_definition(current), {"timezone": "Mars/Olympus"}, ctx=ctx)
    assert (bad.ok, bad.error_code, bad.attempts) == (False, "tool_error", 1)
    assert "Mars/Olympus" in bad.error_message
    assert pool.connected_keys().count("time") == 1


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "README.md").write_text("hello\n")
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Initial commit of the readme"], check=True)
    (repo / "draft.txt").write_text("not yet added\n")
    return repo


def test_git_server_discovery_and_calls(pool, ctx, sleeps, git_repo):
    config = McpServerConfig(
        key="git",
        transport="stdio",
        command=PYTHON,
        args=("-m", "mcp_server_git", "--repository", str(git_repo)),
    )
    tools = by_name(discover(config, pool=pool))
    assert {"git_status", "git_log", "git_commit", "git_reset"} <= set(tools)
    # Annotations only suggest a tier: reset is destructive, status read-only.
    assert tools["git_reset"]["suggested_risk_tier"] == "high"
    assert tools["git_status"]["suggested_risk_tier"] == "low"

    executor = guarded(config, pool, sleeps)
    status = executor.execute(
        tool_definition(tools["git_status"]), {"repo_path": str(git_repo)}, ctx=ctx
    )
    assert status.ok, status.error_message
    assert "draft.txt" in status.content and "README.md" not in status.content

    log = executor.execute(
        tool_definition(tools["git_log"]), {"repo_path": str(git_repo), "max_count": 5}, ctx=ctx
    )
    assert log.ok and "Initial commit of the readme" in log.content


def test_connection_is_reused_and_reestablished_after_the_server_dies(pool, ctx, sleeps):
    config = demo_stdio_config()
    entries = by_name(discover(config, pool=pool))
    whoami = tool_definition(entries["whoami"])
    die = tool_definition(entries["die"], idempotent=False)
    executor = guarded(config, pool, sleeps)

    first = executor.execute(whoami, {}, ctx=ctx)
    second = executor.execute(whoami, {}, ctx=ctx)
    assert first.ok and first.content["pid"] == second.content["pid"]

    died = executor.execute(die, {}, ctx=ctx)
    assert (died.ok, died.error_code) == (False, "connection_lost")
    assert died.attempts == 1  # it may have run: a non-idempotent tool is not sent twice

    after = executor.execute(whoami, {}, ctx=ctx)
    assert after.ok and after.content["pid"] != first.content["pid"]


def test_stdio_credential_goes_to_the_environment_of_a_dedicated_process(pool, ctx, sleeps):
    from dataclasses import replace

    config = demo_stdio_config(credential_env="WARDEN_CREDENTIAL")
    whoami = tool_definition(by_name(discover(config, pool=pool))["whoami"])
    executor = guarded(config, pool, sleeps)

    pooled = executor.execute(whoami, {}, ctx=ctx)
    assert pooled.ok and pooled.content["env"] is None

    with_credential = executor.execute(whoami, {}, ctx=replace(ctx, credential="tok-123"))
    assert with_credential.ok and with_credential.content["env"] == "tok-123"
    assert with_credential.content["pid"] != pooled.content["pid"]
    assert "tok-123" not in with_credential.model_text.replace('"env":"tok-123"', "")

    # A server not configured to take credentials never sees one.
    plain = demo_stdio_config()
    outcome = guarded(plain, pool, sleeps).execute(
        tool_definition(by_name(discover(plain, pool=pool))["whoami"]),
        {},
        ctx=replace(ctx, credential="tok-123"),
    )
    assert outcome.ok and outcome.content["env"] is None


@pytest.mark.parametrize(
    ("mode", "complaint"),
    [
        ("bad_schema", "inputSchema is not a valid JSON Schema"),
        ("duplicate", "duplicate name"),
        ("missing_schema", "inputSchema"),
    ],
)
def test_malformed_tool_list_is_rejected_whole(pool, mode, complaint):
    config = McpServerConfig(
        key=f"malformed-{mode}",
        transport="stdio",
        command=PYTHON,
        args=(str(SERVERS / "malformed_server.py"), mode),
    )
    with pytest.raises(ToolDiscoveryError) as rejected:
        discover(config, pool=pool)
    assert complaint in str(rejected.value)
    assert rejected.value.code == "discovery_invalid"


def test_unstartable_server_is_unavailable_and_retried(pool, ctx, sleeps):
    config = McpServerConfig(key="missing", transport="stdio", command="/nonexistent/mcp-server")
    with pytest.raises(ToolUnavailable) as unavailable:
        discover(config, pool=pool)
    assert unavailable.value.code == "connect_failed"
    assert not unavailable.value.maybe_executed

    definition = tool_definition(
        {
            "name": "anything",
            "description": "",
            "input_schema": {"type": "object"},
            "output_schema": None,
            "server": "missing",
            "suggested_idempotent": False,
            "suggested_risk_tier": "high",
        },
        retry=RetryPolicy(max_attempts=2, base_delay_s=0.1, max_delay_s=0.1),
    )
    outcome = guarded(config, pool, sleeps).execute(definition, {}, ctx=ctx)
    # Never connected, so retrying is safe even for a non-idempotent tool.
    assert (outcome.error_code, outcome.attempts, len(sleeps.delays)) == ("connect_failed", 2, 1)


def test_server_that_never_answers_the_handshake_times_out(pool):
    config = McpServerConfig(
        key="mute",
        transport="stdio",
        command=PYTHON,
        args=("-c", "import sys; sys.stdin.read()"),
        connect_timeout_s=0.5,
    )
    with pytest.raises(ToolUnavailable) as unavailable:
        discover(config, pool=pool)
    assert unavailable.value.code == "connect_timeout"
    assert "mute" not in pool.connected_keys()


def test_server_killed_while_idle_is_replaced_before_the_next_call(pool, ctx, sleeps):
    config = demo_stdio_config(ping_after_idle_s=0)  # ping before every reuse
    whoami = tool_definition(
        by_name(discover(config, pool=pool))["whoami"],
        idempotent=False,
        retry=RetryPolicy(max_attempts=1),
    )
    executor = guarded(config, pool, sleeps)
    first = executor.execute(whoami, {}, ctx=ctx)
    assert first.ok and executor.execute(whoami, {}, ctx=ctx).content["pid"] == first.content["pid"]

    os.kill(first.content["pid"], signal.SIGKILL)
    # The failed ping replaces the connection; the call itself goes to a fresh server, so even a
    # non-idempotent tool with a single attempt succeeds.
    after = executor.execute(whoami, {}, ctx=ctx)
    assert after.ok, after.error_message
    assert after.content["pid"] != first.content["pid"]
