"""What approvers are shown of a call's arguments, and the digest that pins them."""

from __future__ import annotations

from apps.approvals.arguments import REDACTED, arguments_digest, arguments_summary


def test_the_digest_is_of_canonical_json() -> None:
    a = {"path": "/tmp/x", "options": {"b": 1, "a": [1, 2]}, "text": "héllo"}
    b = {"text": "héllo", "options": {"a": [1, 2], "b": 1}, "path": "/tmp/x"}
    assert arguments_digest(a) == arguments_digest(b)
    assert arguments_digest(a) != arguments_digest({**a, "text": "hello"})
    assert len(arguments_digest(a)) == 64


def test_secrets_never_reach_the_summary() -> None:
    summary = arguments_summary(
        {
            "password": "hunter2",
            "Authorization": "Basic dXNlcjpwYXNz",
            "headers": {"X-Api-Key": "abc", "Accept": "json"},
            "auth": "whatever",
            "author": "Ada Lovelace",
            "note": "sk-live-0123456789abcdef",
            "bearer": "Bearer eyJhbGciOi.eyJzdWIiOi.sig",
            "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
            "slack": "xoxb-1234-5678",
            "aws": "AKIAABCDEFGHIJKLMNOP",
            "pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIE...",
            "items": [{"token": "t0k3n"}, "fine"],
        }
    )
    text = str(summary)
    for secret in ("hunter2", "dXNlcjpwYXNz", "abc'", "whatever", "sk-live", "eyJ", "xoxb", "AKIA"):
        assert secret not in text, secret
    assert summary["author"] == "Ada Lovelace"  # not every "auth…" is a secret
    assert summary["headers"] == {"X-Api-Key": REDACTED, "Accept": "json"}
    assert summary["items"] == [{"token": REDACTED}, "fine"]


def test_the_summary_is_bounded() -> None:
    summary = arguments_summary(
        {
            "long": "x" * 5000,
            "many": list(range(100)),
            "deep": {"a": {"b": {"c": {"d": {"e": 1}}}}},
            "wide": {f"k{i}": i for i in range(50)},
        }
    )
    assert summary["long"].startswith("x" * 200) and summary["long"].endswith("(5000 characters)")
    assert len(summary["many"]) == 21 and summary["many"][-1] == "… 80 more items"
    assert summary["deep"]["a"]["b"]["c"] == "{… 1 keys}"
    assert len(summary["wide"]) == 21 and summary["wide"]["…"] == "30 more keys"
    assert arguments_summary(None) is None and arguments_summary(3) == 3
