import time

import jwt
import pytest
from cryptography.fernet import Fernet

from apps.tools.credentials import (
    CredentialRefused,
    CredentialTTLTooLong,
    SecretDecryptionError,
    decrypt_secret,
    encrypt_secret,
    generate_secret_key,
    mint_credential,
    rotate_secret,
    verify_credential,
)

SIGNING_KEY = "s" * 48
SCOPE = {"tenant_id": "tenant-a", "tool": "git_status", "resource": "repo:warden"}


def mint(**overrides):
    args = {"signing_key": SIGNING_KEY, "session_id": "session-1", "ttl_s": 60, **SCOPE}
    args.update(overrides)
    return mint_credential(**args)


def verify(token, **overrides):
    args = {"signing_key": SIGNING_KEY, "replay_store": None, **SCOPE}
    args.update(overrides)
    return verify_credential(token, **args)


def test_secret_round_trips_and_is_not_stored_in_clear():
    key = generate_secret_key()
    token = encrypt_secret("sk-live-123", key)
    assert "sk-live-123" not in token
    assert decrypt_secret(token, key) == "sk-live-123"


def test_secret_refuses_wrong_key_and_tampering_without_leaking_it():
    token = encrypt_secret("sk-live-123", generate_secret_key())
    with pytest.raises(SecretDecryptionError) as wrong_key:
        decrypt_secret(token, generate_secret_key())
    assert token not in str(wrong_key.value)
    key = generate_secret_key()
    tampered = encrypt_secret("sk-live-123", key)
    tampered = tampered[:-5] + ("A" if tampered[-5] != "A" else "B") + tampered[-4:]
    with pytest.raises(SecretDecryptionError):
        decrypt_secret(tampered, key)


def test_key_rotation_keeps_old_secrets_readable_then_retires_the_old_key():
    old, new = Fernet.generate_key(), Fernet.generate_key()
    stored = encrypt_secret("db-password", old)
    assert decrypt_secret(stored, [new, old]) == "db-password"
    rotated = rotate_secret(stored, [new, old])
    assert decrypt_secret(rotated, new) == "db-password"
    with pytest.raises(SecretDecryptionError):
        decrypt_secret(rotated, old)


def test_credential_carries_its_scope_and_lifetime():
    before = int(time.time())
    claims = verify(mint(ttl_s=120))
    assert (claims.tenant_id, claims.session_id, claims.tool, claims.resource) == (
        "tenant-a",
        "session-1",
        "git_status",
        "repo:warden",
    )
    assert claims.expires_at - claims.issued_at == 120
    assert claims.issued_at >= before
    # Each call gets its own credential.
    assert verify(mint()).jti != verify(mint()).jti


def test_credential_lifetime_is_capped_at_five_minutes():
    assert verify(mint(ttl_s=300))
    with pytest.raises(CredentialTTLTooLong):
        mint(ttl_s=301)


def test_expired_credential_is_refused():
    still_valid = mint(ttl_s=300, now=time.time() - 290)
    assert verify(still_valid)
    expired = mint(ttl_s=300, now=time.time() - 310)
    with pytest.raises(CredentialRefused) as refused:
        verify(expired)
    assert refused.value.reason == "expired"
    assert refused.value.jti == jwt.decode(expired, options={"verify_signature": False})["jti"]


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"tool": "git_commit"}, "wrong_audience"),
        ({"resource": "repo:other"}, "wrong_scope"),
        ({"tenant_id": "tenant-b"}, "wrong_tenant"),
        ({"signing_key": "x" * 48}, "bad_signature"),
    ],
)
def test_out_of_scope_credential_is_refused_with_the_reason(override, reason):
    with pytest.raises(CredentialRefused) as refused:
        verify(mint(), **override)
    assert refused.value.reason == reason


def test_garbage_and_unsigned_tokens_are_refused():
    with pytest.raises(CredentialRefused) as garbage:
        verify("not-a-token")
    assert garbage.value.reason == "malformed"
    claims = jwt.decode(mint(), options={"verify_signature": False})
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    with pytest.raises(CredentialRefused) as none_alg:
        verify(unsigned)
    assert none_alg.value.reason == "malformed"


def test_short_signing_keys_are_rejected():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        mint(signing_key="short")
