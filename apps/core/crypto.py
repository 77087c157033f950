"""Secrets at rest: Fernet (AES-128-CBC + HMAC) with rotation through MultiFernet."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretDecryptError(Exception):
    """A stored secret can't be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if keys:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    derived = base64.urlsafe_b64encode(hashlib.sha256(f"warden:{secret_key}".encode()).digest())
    return MultiFernet([Fernet(derived)])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.WARDEN_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretDecryptError(
            "stored secret cannot be decrypted with the configured keys"
        ) from exc
