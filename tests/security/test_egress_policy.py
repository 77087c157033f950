"""The address check on its own: every notation of loopback normalises to a refusal, the
operator's entries parse strictly, and one bad answer condemns a name. Resolution here is
local (numeric literals and /etc/hosts); nothing connects."""

from __future__ import annotations

import pytest

from apps.core.egress import EgressPolicy, EgressRefused

NOTATIONS = [
    "127.0.0.1",
    "localhost",
    "::1",
    "[::1]",
    "0x7f000001",
    "2130706433",
    "0177.0.0.1",
    "127.1",
    "0",
    "::ffff:127.0.0.1",
    "0:0:0:0:0:ffff:7f00:1",
    "LOCALHOST.",
]


@pytest.mark.parametrize("host", NOTATIONS)
def test_every_notation_of_loopback_is_refused(host: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        EgressPolicy().check(host, 80)
    assert refused.value.reason in {"loopback", "unspecified", "ipv4_embedded_loopback"}


@pytest.mark.parametrize("host", NOTATIONS)
def test_an_address_entry_allows_every_notation_of_that_address(host: str) -> None:
    policy = EgressPolicy(("127.0.0.0/8", "::1", "0.0.0.0"))
    assert policy.check(host, 80)


def test_a_port_entry_allows_that_port_only() -> None:
    policy = EgressPolicy(("127.0.0.1:8081",))
    assert policy.check("0x7f000001", 8081) == ["127.0.0.1"]
    with pytest.raises(EgressRefused):
        policy.check("127.0.0.1", 6379)


def test_a_name_entry_does_not_allow_its_address_under_another_name() -> None:
    policy = EgressPolicy(("localhost:8081",))
    assert policy.check("localhost", 8081)
    with pytest.raises(EgressRefused):
        policy.check("127.0.0.1", 8081)


def test_one_forbidden_answer_condemns_the_name() -> None:
    policy = EgressPolicy(resolver=lambda host, port: ["8.8.8.8", "169.254.169.254"])
    with pytest.raises(EgressRefused) as refused:
        policy.check("cloud.example", 80)
    assert (refused.value.reason, refused.value.address) == ("link_local", "169.254.169.254")


@pytest.mark.parametrize("entry", ["", "  "])
def test_blank_entries_are_ignored(entry: str) -> None:
    assert EgressPolicy((entry,)) == EgressPolicy()


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "host:99999", "host:port", "[::1", "bad host"])
def test_malformed_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        EgressPolicy((entry,))
