"""The platform's egress policy, from `WARDEN_EGRESS_ALLOW`."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .policy import EgressPolicy


@lru_cache(maxsize=8)
def _policy(entries: tuple[str, ...]) -> EgressPolicy:
    try:
        return EgressPolicy(entries)
    except ValueError as exc:
        raise ImproperlyConfigured(f"WARDEN_EGRESS_ALLOW: {exc}") from None


def platform_egress_policy() -> EgressPolicy:
    """What every outbound connection made for a tenant is checked against.

    Read on each call (cheaply: the parsed policy is cached per value), so a connection made
    after the setting changed is checked against the new allowlist.
    """
    return _policy(tuple(settings.WARDEN_EGRESS_ALLOW))
