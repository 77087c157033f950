"""The OPA engine through opa-python-client against a local server speaking OPA's REST policy
and data APIs (tests/policies/opa_server.py), and both engines agreeing on a table of inputs."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from apps.policies.defaults import DEFAULT_POLICY_SOURCE, SAMPLE_INPUT
from apps.policies.engines.base import EngineError, EngineTimeout, PolicyCompileError, PolicyModule
from apps.policies.engines.opa import OpaEngine, namespaced
from apps.policies.engines.rego import RegoEngine
from tests.policies.opa_server import OpaLike

ENTRY = "data.warden.decision"

# Policies beyond the default: arguments, roles and time in the input, a helper rule referred
# to through data.<package>, a result of the wrong shape, and an undefined one.
ARGUMENTS_POLICY = """\
package warden

import rego.v1

blocked_hosts := {"evil.example", "metadata.internal"}

decision := {"allow": false, "require_approval": false, "reasons": ["blocked host"],
	"obligations": []} if {
	input.arguments.host in data.warden.blocked_hosts
} else := {"allow": true, "require_approval": true, "reasons": ["viewers need approval"],
	"obligations": ["notify"]} if {
	"viewer" in input.user.roles
} else := {"allow": true, "require_approval": false, "reasons": [], "obligations": []}
"""
MALFORMED_POLICY = 'package warden\nimport rego.v1\n\ndecision := {"allow": "yes"}\n'
UNDEFINED_POLICY = (
    'package warden\nimport rego.v1\n\ndecision := {"allow": true} if input.environment == "x"\n'
)


def _inputs() -> list[dict[str, Any]]:
    table = []
    tiers = ["low", "medium", "high", "critical", "bogus"]
    environments = ["dev", "stage", "prod"]
    budgets = [(0, 40000), (39999, 40000), (40000, 40000), (0, 0)]
    hosts = ["example.com", "evil.example"]
    roles = [["member"], ["viewer"]]
    for tier, env, (used, limit), host, role in itertools.product(
        tiers, environments, budgets, hosts, roles
    ):
        doc = copy.deepcopy(SAMPLE_INPUT)
        doc["tool"]["risk_tier"] = tier
        doc["environment"] = env
        doc["budget"] = {
            "tokens_used": used,
            "tokens_limit": limit,
            "fraction_used": used / limit if limit else 1.0,
        }
        doc["arguments"] = {"host": host}
        doc["user"]["roles"] = role
        table.append(doc)
    return table


INPUTS = _inputs()


@pytest.mark.parametrize(
    "source", [DEFAULT_POLICY_SOURCE, ARGUMENTS_POLICY, MALFORMED_POLICY, UNDEFINED_POLICY]
)
def test_both_engines_agree_on_a_table_of_inputs(
    source: str, rego_engine: RegoEngine, opa_engine: OpaEngine
) -> None:
    policy = PolicyModule(source=source, entry_point=ENTRY)
    for input_doc in INPUTS:
        local = rego_engine.evaluate(policy, input_doc)
        remote = opa_engine.evaluate(policy, input_doc)
        assert (remote.defined, remote.value) == (local.defined, local.value), input_doc
    assert len(INPUTS) == 240


def test_the_default_policy_decides_as_documented(opa_engine: OpaEngine) -> None:
    policy = PolicyModule(source=DEFAULT_POLICY_SOURCE, entry_point=ENTRY)

    def outcome(tier: str, env: str = "dev", used: int = 0) -> tuple[bool, bool]:
        doc = copy.deepcopy(SAMPLE_INPUT)
        doc["tool"]["risk_tier"], doc["environment"] = tier, env
        doc["budget"]["tokens_used"] = used
        value = opa_engine.evaluate(policy, doc).value
        return value["allow"], value["require_approval"]

    assert outcome("critical") == (False, False)
    assert outcome("high") == (True, True)
    assert outcome("medium", "prod") == (True, True)
    assert outcome("medium", "dev") == (True, False)
    assert outcome("low", "prod") == (True, False)
    assert outcome("low", used=40000) == (False, False)


def test_policies_are_pushed_once_with_the_policy_api_each_in_a_package_of_its_own(
    opa_server: OpaLike, opa_engine: OpaEngine
) -> None:
    first = PolicyModule(source=DEFAULT_POLICY_SOURCE, entry_point=ENTRY)
    second = PolicyModule(source=ARGUMENTS_POLICY, entry_point=ENTRY)
    for _ in range(3):
        opa_engine.evaluate(first, SAMPLE_INPUT)
        opa_engine.evaluate(second, SAMPLE_INPUT)
    puts = [path for method, path in opa_server.requests if method == "PUT"]
    assert puts == [f"/v1/policies/warden-{first.key}", f"/v1/policies/warden-{second.key}"]
    posts = [path for method, path in opa_server.requests if method == "POST"]
    assert len(posts) == 6 and all(p.startswith("/v1/data/warden_") for p in posts)
    # Both declare `package warden`; in OPA's one data tree they must not meet.
    packages = {
        source.split("package ", 1)[1].split("\n", 1)[0] for source in opa_server.modules.values()
    }
    assert len(packages) == 2 and all(p.endswith(".warden") for p in packages)
    assert namespaced(second)[0].count("\n") == ARGUMENTS_POLICY.count("\n")  # same lines


def test_a_policy_the_server_lost_is_pushed_again(
    opa_server: OpaLike, opa_engine: OpaEngine
) -> None:
    policy = PolicyModule(source=DEFAULT_POLICY_SOURCE, entry_point=ENTRY)
    assert opa_engine.evaluate(policy, SAMPLE_INPUT).defined
    opa_server.modules.clear()  # OPA restarted
    evaluation = opa_engine.evaluate(policy, SAMPLE_INPUT)
    assert evaluation.defined and evaluation.value["allow"] is True


def test_opa_reports_compile_errors_with_line_and_column(
    opa_server: OpaLike, opa_engine: OpaEngine
) -> None:
    source = "package warden\nimport rego.v1\n\ndecision if { input.a ==  }\n"
    with pytest.raises(PolicyCompileError) as caught:
        opa_engine.check(PolicyModule(source=source, entry_point=ENTRY), sample_input=SAMPLE_INPUT)
    assert (caught.value.line, caught.value.column) == (4, 23)
    assert "boolean operator" in caught.value.message
    assert opa_server.modules == {}  # the trial upload was not kept


def test_a_good_policy_checks_out_and_leaves_nothing_behind(
    opa_server: OpaLike, opa_engine: OpaEngine
) -> None:
    policy = PolicyModule(source=ARGUMENTS_POLICY, entry_point=ENTRY)
    opa_engine.check(policy, sample_input=SAMPLE_INPUT)
    assert opa_server.modules == {}
    # Checked again while the same source is live for evaluation: its own package, no clash.
    opa_engine.evaluate(policy, SAMPLE_INPUT)
    opa_engine.check(policy, sample_input=SAMPLE_INPUT)
    assert list(opa_server.modules) == [f"warden-{policy.key}"]
    checked = [p for m, p in opa_server.requests if m == "POST" and "warden_check_" in p]
    assert len(checked) == 2


def test_a_slow_opa_is_a_timeout(opa_server: OpaLike) -> None:
    engine = OpaEngine(opa_server.url, timeout_s=0.3)
    opa_server.delay_s = 1.0
    try:
        with pytest.raises(EngineTimeout, match=r"did not answer within 0\.3s"):
            engine.evaluate(PolicyModule(source=DEFAULT_POLICY_SOURCE, entry_point=ENTRY), {})
    finally:
        opa_server.delay_s = 0.0
        engine.close()


def test_an_unreachable_opa_is_an_engine_error() -> None:
    from devtools.embedded import free_port

    engine = OpaEngine(f"http://127.0.0.1:{free_port()}", timeout_s=1.0)
    with pytest.raises(EngineError, match="unreachable"):
        engine.evaluate(PolicyModule(source=DEFAULT_POLICY_SOURCE, entry_point=ENTRY), {})


def test_an_evaluation_error_on_the_server_is_an_engine_error(opa_engine: OpaEngine) -> None:
    conflicting = 'package warden\nimport rego.v1\ndecision := {"allow": true}\ndecision := 2\n'
    with pytest.raises(EngineError, match="OPA 500"):
        opa_engine.evaluate(PolicyModule(source=conflicting, entry_point=ENTRY), {})
