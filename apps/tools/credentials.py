"""Secrets at rest, and the ephemeral credential minted for each tool call.

Secrets (an MCP server's API key, say) are stored Fernet-encrypted. Keys come from settings as
a list, newest first: the first encrypts, all decrypt (MultiFernet), and `rotate_secret`
re-encrypts a stored token under the newest key.

Per-call credentials are short-lived HS256 JWTs scoped to one tenant, session, tool (the JWT
audience) and resource (the scope). The platform mints one per tool invocation and hands it to
the tool server in a header or an environment variable; the model never sees it. A tool server
(or the platform, on the way back in) verifies it with `verify_credential`, which says exactly
why a token is refused so the refusal can be audited.

A credential is single-use: every token carries a unique id (`jti`), and `verify_credential`
given a `replay_store` claims that id for the rest of the token's lifetime, so a second
presentation is refused as `credential_replayed`. `RedisReplayStore` is the shared store (SET NX
with an expiry); a tool server that verifies tokens itself passes one pointed at its own Redis,
or `MemoryReplayStore` when it runs as a single process. The store is a required argument:
`replay_store=None` (no replay check) is for tests of the other checks only. The
store failing refuses the token (`replay_check_unavailable`): verification fails closed.

Framework-free: no Django settings are read here; the integrator passes keys from settings.
The Fernet functions live in `apps.core.crypto` (re-exported here).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

import jwt
import redis

from apps.core.crypto import (  # re-exported: secrets at rest live in core
    Key,
    SecretDecryptionError,
    decrypt_secret,
    encrypt_secret,
    generate_secret_key,
    rotate_secret,
)

MAX_CREDENTIAL_TTL_S = 300
ISSUER = "warden"
_ALGORITHM = "HS256"
_MIN_SIGNING_KEY_BYTES = 32

__all__ = [
    "Key",
    "RedisReplayStore",
    "ReplayStore",
    "ReplayStoreUnavailable",
    "SecretDecryptionError",
    "decrypt_secret",
    "encrypt_secret",
    "generate_secret_key",
    "rotate_secret",
]


# ---------------------------------------------------------------------------------------------
# Secrets at rest


# ---------------------------------------------------------------------------------------------
# Ephemeral per-call credentials


class CredentialTTLTooLong(ValueError):
    pass


class CredentialRefused(Exception):
    """A credential was refused. `reason` is stable, for audit events and API errors:
    expired, not_yet_valid, bad_signature, malformed, wrong_audience, wrong_scope, wrong_tenant,
    credential_replayed (presented before), replay_check_unavailable (the replay store failed).
    """

    def __init__(self, reason: str, message: str, *, jti: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.jti = jti


@dataclass(frozen=True)
class CredentialClaims:
    tenant_id: str
    session_id: str
    tool: str
    resource: str
    jti: str
    issued_at: int
    expires_at: int


class ReplayStoreUnavailable(Exception):
    """The replay store could not say whether an id was seen; the token must be refused."""


class ReplayStore(Protocol):
    def claim(self, jti: str, *, ttl_s: int) -> bool:
        """Record `jti` for `ttl_s` seconds. True the first time; False if it was already
        recorded. Raises ReplayStoreUnavailable when it cannot tell."""
        ...


class RedisReplayStore:
    """Seen credential ids in Redis: one key per id, set only if absent, expiring with the token.

    SET NX is atomic, so two presentations racing on different workers cannot both win.
    """

    def __init__(self, client: redis.Redis, *, prefix: str = "warden:credential:jti:") -> None:
        self._client = client
        self._prefix = prefix

    def claim(self, jti: str, *, ttl_s: int) -> bool:
        try:
            return bool(self._client.set(self._prefix + jti, 1, nx=True, ex=max(1, ttl_s)))
        except redis.RedisError as exc:
            raise ReplayStoreUnavailable(f"{type(exc).__name__}: {exc}") from exc


class MemoryReplayStore:
    """Seen credential ids in this process: for a tool server that runs as one process.

    A server with several processes or machines needs a shared store (RedisReplayStore),
    or a replay could land on a process that has not seen the id.
    """

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, jti: str, *, ttl_s: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: t for k, t in self._seen.items() if t > now}
            expires = self._seen.get(jti)
            if expires is not None and expires > now:
                return False
            self._seen[jti] = now + max(1, ttl_s)
            return True


def _signing_key(key: Key) -> bytes:
    raw = key.encode() if isinstance(key, str) else key
    if len(raw) < _MIN_SIGNING_KEY_BYTES:
        raise ValueError(f"the signing key must be at least {_MIN_SIGNING_KEY_BYTES} bytes")
    return raw


def mint_credential(
    *,
    signing_key: Key,
    tenant_id: str,
    session_id: str,
    tool: str,
    resource: str,
    ttl_s: int = 60,
    now: float | None = None,
    jti: str | None = None,
) -> str:
    """A signed token for one call of `tool` on `resource`, valid for `ttl_s` (≤ 300) seconds.

    `jti` is the token's unique id (default: a random UUID); a caller that records the id of
    every call passes its own so the record and the token agree.
    """
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    if ttl_s > MAX_CREDENTIAL_TTL_S:
        raise CredentialTTLTooLong(
            f"a tool credential may live at most {MAX_CREDENTIAL_TTL_S}s, not {ttl_s}s"
        )
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": ISSUER,
        "aud": tool,
        "sub": f"session:{session_id}",
        "tenant": tenant_id,
        "sid": session_id,
        "scope": resource,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_s,
        "jti": jti or uuid.uuid4().hex,
    }
    return jwt.encode(claims, _signing_key(signing_key), algorithm=_ALGORITHM)


def verify_credential(
    token: str,
    *,
    signing_key: Key,
    tenant_id: str,
    tool: str,
    resource: str,
    replay_store: ReplayStore | None,
    leeway_s: float = 0,
) -> CredentialClaims:
    """Check a credential for `tool` on `resource` in `tenant_id`; CredentialRefused says why.

    `replay_store` is required so that no verifier forgets it: a token that passes every other
    check is then claimed in the store for
    its remaining lifetime (plus the leeway): the first presentation verifies, any later one is
    refused as `credential_replayed`, and a store error refuses it as `replay_check_unavailable`.
    A token refused for another reason is not claimed. Pass `replay_store=None` only where
    replays are harmless (unit tests of the other checks): credentials are single-use.
    """
    key = _signing_key(signing_key)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[_ALGORITHM],
            audience=tool,
            issuer=ISSUER,
            leeway=leeway_s,
            options={"require": ["exp", "iat", "nbf", "aud", "iss", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise CredentialRefused("expired", "the credential has expired", jti=_jti(token)) from None
    except jwt.ImmatureSignatureError:
        raise CredentialRefused(
            "not_yet_valid", "the credential is not valid yet", jti=_jti(token)
        ) from None
    except jwt.InvalidAudienceError:
        raise CredentialRefused(
            "wrong_audience", f"the credential was not issued for tool {tool!r}", jti=_jti(token)
        ) from None
    except jwt.InvalidSignatureError:
        raise CredentialRefused("bad_signature", "the credential's signature is invalid") from None
    except jwt.InvalidTokenError as exc:
        raise CredentialRefused("malformed", f"the credential is malformed: {exc}") from None
    jti = str(claims["jti"])
    if claims.get("tenant") != tenant_id:
        raise CredentialRefused("wrong_tenant", "the credential belongs to another tenant", jti=jti)
    if claims.get("scope") != resource:
        raise CredentialRefused(
            "wrong_scope", f"the credential does not cover resource {resource!r}", jti=jti
        )
    expires_at = int(claims["exp"])
    if replay_store is not None:
        ttl_s = math.ceil(expires_at + leeway_s - time.time())
        try:
            first = replay_store.claim(jti, ttl_s=max(1, ttl_s))
        except ReplayStoreUnavailable:
            raise CredentialRefused(
                "replay_check_unavailable",
                "the credential cannot be checked for reuse right now",
                jti=jti,
            ) from None
        if not first:
            raise CredentialRefused(
                "credential_replayed", "the credential was already used", jti=jti
            )
    return CredentialClaims(
        tenant_id=claims["tenant"],
        session_id=str(claims.get("sid", "")),
        tool=tool,
        resource=claims["scope"],
        jti=jti,
        issued_at=int(claims["iat"]),
        expires_at=expires_at,
    )


def _jti(token: str) -> str | None:
    # Only for the audit record of a refusal whose signature was already checked by PyJWT
    # (expiry and audience are checked after the signature).
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    jti = claims.get("jti")
    return str(jti) if jti is not None else None
