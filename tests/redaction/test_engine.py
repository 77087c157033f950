"""The redaction engine on its own: each kind is redacted, its near-misses are not, tenant
patterns are checked before they can run, and a stream comes out as the whole text would."""

from __future__ import annotations

import hashlib
import random
import uuid

import pytest

from apps.core.redaction import (
    DEFAULT,
    CustomPattern,
    InvalidPattern,
    RedactionConfig,
    Redactor,
    StreamRedactor,
    validate_custom_pattern,
    validate_custom_patterns,
)

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAwJ2x\nQ0Fh7pW+9Zs=\n"
    "-----END RSA PRIVATE KEY-----"
)

# (kind, value): each is found inside a sentence and replaced by its marker.
POSITIVE = [
    ("email", "jane.doe+crm@example.co.uk"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "+1 (415) 555-0132"),
    ("phone", "(415) 555-0132"),
    ("phone", "030 1234 5678"),
    ("card", "4111 1111 1111 1111"),
    ("card", "5500-0000-0000-0004"),
    ("card", "378282246310005"),
    ("iban", "DE89 3704 0044 0532 0130 00"),
    ("iban", "GB82WEST12345698765432"),
    ("national_id", "078-05-1121"),  # US SSN
    ("national_id", "AB 12 34 56 C"),  # UK NINO
    ("national_id", "36 574 261 809"),  # DE Steuer-IdNr
    ("national_id", "2 95 10 99 126 111 93"),  # FR NIR
    ("national_id", "RCCMNL83S18D969H"),  # IT codice fiscale
    ("national_id", "54362315K"),  # ES DNI
    ("api_key", "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
    ("api_key", "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx"),
    ("api_key", "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
    ("api_key", "xoxb-123456789012-abcdefghijkl"),
    ("api_key", "AKIAIOSFODNN7EXAMPLE"),
    ("api_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("api_key", "wdn_abc12345_Zm9vYmFyYmF6cXV4cXV1eA"),
    ("bearer_token", "Bearer abc.DEF-ghi_jkl~123"),
    ("jwt", JWT),
    ("private_key", PEM),
]

# Look-alikes that must stay readable: redacting them would hide what the reader needs.
NEGATIVE = [
    "4111 1111 1111 1112",  # 16 digits failing Luhn
    "4111111111111112",
    "DE89 3704 0044 0532 0130 01",  # IBAN with a bad checksum
    "DE89370400440532013001",
    "666-12-3456",  # SSN area 666 is never issued
    "GB 12 34 56 C",  # NINO prefix GB is never issued
    "36 574 261 808",  # Steuer-IdNr with a bad check digit
    "2026-11-29 07:00 UTC",
    "123e4567-e89b-12d3-a456-426614174000",
    "version 1.2.3, build 4821, port 8080",
    "order #1234567",
    "eyJub3QiOiJhIGp3dCJ9",  # one base64 part: not a JWT
    "task-abcdefghijklmnopqrstuvwxyz",  # `sk-` inside a word
    "user@localhost",
    "bearer of bad news",
]


@pytest.mark.parametrize(("kind", "value"), POSITIVE, ids=[f"{k}:{v[:12]}" for k, v in POSITIVE])
def test_each_kind_is_redacted(kind: str, value: str) -> None:
    out = DEFAULT.text(f"before {value} after")
    assert out == f"before [REDACTED:{kind}] after"


@pytest.mark.parametrize("value", NEGATIVE)
def test_near_misses_are_left_alone(value: str) -> None:
    assert DEFAULT.text(f"see {value} here") == f"see {value} here"


def test_payloads_are_redacted_deep_keys_included_and_other_values_kept() -> None:
    payload = {
        "tool": "crm.update",
        "arguments": {"to": ["jane@example.com", 42, None, True], "jane@example.com": 1.5},
    }
    assert DEFAULT.payload(payload) == {
        "tool": "crm.update",
        "arguments": {"to": ["[REDACTED:email]", 42, None, True], "[REDACTED:email]": 1.5},
    }


def test_a_tenant_may_turn_pii_off_but_never_credentials() -> None:
    quiet = Redactor(RedactionConfig(kinds=frozenset({"phone"})))
    text = "jane@example.com +44 20 7946 0958 ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    assert quiet.text(text) == "jane@example.com [REDACTED:phone] [REDACTED:api_key]"
    off = Redactor(RedactionConfig(enabled=False, custom=(CustomPattern("emp", r"EMP-\d+"),)))
    assert off.text(text + " EMP-1") == (
        "jane@example.com +44 20 7946 0958 [REDACTED:api_key] EMP-1"
    )


def test_custom_patterns_are_named_in_their_marker() -> None:
    redactor = Redactor(
        RedactionConfig(
            custom=(
                CustomPattern("employee_id", r"EMP-\d{6}"),
                CustomPattern("project", r"(?i:prj)-[A-Z]{3}"),
            )
        )
    )
    assert redactor.text("EMP-123456 on prj-ABC, EMP-12") == (
        "[REDACTED:employee_id] on [REDACTED:project], EMP-12"
    )


@pytest.mark.parametrize(
    ("pattern", "code"),
    [
        (r"(a+)+$", "pattern_catastrophic"),  # nested quantifiers
        (r"(?:\w+\s?)+$", "pattern_catastrophic"),
        (r"(?:a|aa)+$", "pattern_catastrophic"),  # no nesting, still exponential: the probe
        (r"[unclosed", "pattern_invalid"),
        (r"x*", "pattern_matches_empty"),
        (r"(EMP)-\d+", "pattern_has_groups"),
        (r"(?i)emp-\d+", "pattern_global_flags"),
        ("a" * 301, "pattern_too_long"),
    ],
)
def test_hostile_or_broken_patterns_are_refused(pattern: str, code: str) -> None:
    with pytest.raises(InvalidPattern) as refused:
        validate_custom_pattern(pattern)
    assert refused.value.code == code


def test_pattern_names_are_checked() -> None:
    with pytest.raises(InvalidPattern) as taken:
        validate_custom_patterns([CustomPattern("email", r"x\d")])
    assert taken.value.code == "pattern_name_taken"
    with pytest.raises(InvalidPattern) as bad:
        validate_custom_patterns([CustomPattern("Bad Name", r"x\d")])
    assert bad.value.code == "pattern_name_invalid"


def test_a_pattern_that_runs_away_at_runtime_redacts_the_whole_string() -> None:
    # Compiled without validation (as if a pattern slipped through): the timeout fails closed.
    redactor = Redactor(RedactionConfig(custom=(CustomPattern("slow", r"(?:a|aa)+$"),)))
    assert redactor.text("a" * 60 + "!") == "[REDACTED:custom]"


def test_a_token_stream_comes_out_as_the_whole_text_would() -> None:
    text = (
        "Thought: jane.doe@example.com wants a refund to DE89 3704 0044 0532 0130 00; I'll "
        f"send Authorization: Bearer sk-proj-AbCdEfGhIjKlMnOpQrStUvWx and {JWT}, key {PEM}, "
        "and call +44 20 7946 0958. Nothing else. "
    ) * 3
    whole = DEFAULT.text(text)
    assert "jane.doe" not in whole and "MIIE" not in whole
    for seed in range(50):
        rnd = random.Random(seed)
        stream, out, i = StreamRedactor(DEFAULT), [], 0
        while i < len(text):
            n = rnd.randint(1, 8)
            out.append(stream.feed(text[i : i + n]))
            i += n
        out.append(stream.flush())
        assert "".join(out) == whole
        assert not any("jane.doe" in piece or "0532" in piece for piece in out)


def test_hex_identifiers_are_never_taken_for_numbers() -> None:
    # Before hex ids were recognised, ~0.2 % of UUIDs lost a "card" from their middle: a
    # node id, an approval id in a Slack button, a digest in an event would have broken.
    rnd = random.Random(12)
    for i in range(15000):
        ident = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        digest = hashlib.sha256(str(i).encode()).hexdigest()
        for text in (ident, f"node {ident}:s0:c1", digest, f"sha256:{digest[:40]}"):
            assert DEFAULT.text(text) == text
