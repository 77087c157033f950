"""Encryption of secrets at rest."""

from __future__ import annotations

from config.env import env_list

# Fernet keys (urlsafe base64, 32 bytes), comma-separated: the first encrypts,
# all decrypt, so keys rotate by prepending a new one. Without any, a key is
# derived from DJANGO_SECRET_KEY (fine for dev; set real keys in production).
WARDEN_ENCRYPTION_KEYS = env_list("WARDEN_ENCRYPTION_KEYS", [])
