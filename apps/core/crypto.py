"""Secrets at rest: Fernet (AES-128-CBC + HMAC), rotation through MultiFernet.

The primitives take keys explicitly (newest first: the first encrypts, all decrypt);
`encrypt` / `decrypt` use the keys from settings.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

Key = str | bytes


class SecretDecryptionError(Exception):
    """The ciphertext was not made by any of the given keys, or was tampered with."""


def generate_secret_key() -> str:
    """A new Fernet key (url-safe base64 text), for settings."""
    return Fernet.generate_key().decode()


def _fernet(keys: Key | Sequence[Key]) -> MultiFernet:
    if isinstance(keys, str | bytes):
        keys = [keys]
    if not keys:
        raise ValueError("at least one encryption key is required")
    return MultiFernet([Fernet(k) for k in keys])


def encrypt_secret(plaintext: str, key: Key | Sequence[Key]) -> str:
    """Encrypt under `key` (or the first of a newest-first list of keys)."""
    return _fernet(key).encrypt(plaintext.encode()).decode()


def decrypt_secret(token: str, key: Key | Sequence[Key]) -> str:
    """Decrypt with `key` or any key of the list."""
    try:
        return _fernet(key).decrypt(token.encode()).decode()
    except InvalidToken:
        # Never include the token: it is the secret's ciphertext, and logs keep it forever.
        raise SecretDecryptionError("secret cannot be decrypted with the configured keys") from None


def rotate_secret(token: str, keys: Sequence[Key]) -> str:
    """Re-encrypt a stored secret under the newest key (keys[0]); older keys may then retire."""
    try:
        return _fernet(keys).rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError("secret cannot be decrypted with the configured keys") from None


@lru_cache(maxsize=4)
def _settings_keys(keys: tuple[str, ...], secret_key: str) -> tuple[Key, ...]:
    if keys:
        return keys
    derived = base64.urlsafe_b64encode(hashlib.sha256(f"warden:{secret_key}".encode()).digest())
    return (derived,)


def _keys() -> tuple[Key, ...]:
    from django.conf import settings

    return _settings_keys(tuple(settings.WARDEN_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(plaintext: str) -> str:
    """Encrypt with the newest key of WARDEN_ENCRYPTION_KEYS (or one derived from SECRET_KEY)."""
    return encrypt_secret(plaintext, _keys())


def decrypt(token: str) -> str:
    return decrypt_secret(token, _keys())
