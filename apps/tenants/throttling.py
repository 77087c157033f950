"""API throttles in Redis: per principal, per client address, and failed bearer
authentications per address.

Each counter is a window that starts at its first hit and lasts the rate's period: one
atomic step per request, whatever the rate (DRF's SimpleRateThrottle keeps a list of
timestamps per client and rewrites it on every request, and two processes racing on
that read-modify-write both get through). The step is a Lua script, so counting a hit,
starting a window and reading when it ends are one round trip (through Django's cache
API they were two to four, each building a new redis-py client: ~2 ms of every request,
profiled). Keys carry the cache's KEY_PREFIX, so deployments sharing a Redis, and tests
with their own prefix, do not share windows. Rates are read from settings on every call
so `override_settings` and a changed environment both take effect.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from apps.core.client_ip import client_ip
from apps.core.redis_pool import SharedConnectionPool
from apps.tenants.identity import Identity

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int


def parse_rate(rate: str) -> Rate:
    """'30/minute' -> Rate(30, 60). Only the period's first letter counts, like DRF."""
    count, _, period = rate.partition("/")
    return Rate(int(count), _PERIODS[period.strip()[0].lower()])


# KEYS[1]: the window (a hash: hits, start). ARGV: now, limit, seconds, count ('1' or '0').
# Returns '' when the hit fits, else the seconds until the window ends.
_WINDOW = """
local now, limit, secs = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local hits
if ARGV[4] == '1' then
  hits = redis.call('HINCRBY', KEYS[1], 'hits', 1)
  if hits == 1 then
    redis.call('HSET', KEYS[1], 'start', ARGV[1])
    redis.call('EXPIRE', KEYS[1], secs)
  end
else
  hits = tonumber(redis.call('HGET', KEYS[1], 'hits') or '0') + 1
end
if hits <= limit then return '' end
local start = tonumber(redis.call('HGET', KEYS[1], 'start') or ARGV[1])
return tostring(math.max(1, start + secs - now))
"""

_scripts: dict[str, Any] = {}
_scripts_lock = threading.Lock()


def _window_script() -> Any:
    """The registered script on a client of the cache's Redis (one pool per process)."""
    location = str(settings.CACHES["default"]["LOCATION"])
    script = _scripts.get(location)
    if script is None:
        with _scripts_lock:
            script = _scripts.get(location)
            if script is None:
                client = redis.Redis(connection_pool=SharedConnectionPool.from_url(location))
                script = _scripts[location] = client.register_script(_WINDOW)
    return script


def _window_hit(scope: str, ident: str, rate: Rate, *, count_it: bool = True) -> float | None:
    """Count a hit in `ident`'s window (or, with count_it=False, only ask whether one
    more fits); the seconds to wait if it does not, else None."""
    key = cache.make_and_validate_key(f"throttle:{scope}:{ident}")
    wait = _window_script()(
        keys=[key], args=[repr(time.time()), rate.count, rate.seconds, int(count_it)]
    )
    return float(wait) if wait else None


class _WindowThrottle(BaseThrottle):
    scope = ""
    rate_setting = ""

    def ident(self, request: Request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request: Request, view: Any) -> bool:
        ident = self.ident(request)
        if ident is None:
            return True
        rate = parse_rate(getattr(settings, self.rate_setting))
        self._wait = _window_hit(self.scope, ident, rate)
        return self._wait is None

    def wait(self) -> float | None:
        return math.ceil(self._wait) if self._wait is not None else None


class AddressRateThrottle(_WindowThrottle):
    """Every API request, authenticated or not, counts against its client address."""

    scope = "address"
    rate_setting = "WARDEN_API_RATE_PER_ADDRESS"

    def ident(self, request: Request) -> str | None:
        return client_ip(request)


class PrincipalRateThrottle(_WindowThrottle):
    """Requests of one API key, or of one user (console session, OIDC JWT)."""

    scope = "principal"
    rate_setting = "WARDEN_API_RATE_PER_PRINCIPAL"

    def ident(self, request: Request) -> str | None:
        identity = request.auth
        if isinstance(identity, Identity) and identity.api_key is not None:
            return f"key:{identity.api_key.id}"
        user = request.user
        if user is not None and user.is_authenticated:
            return f"user:{user.pk}"
        return None


# --------------------------------------------------------------------------- failed auth


def _failure_rate() -> Rate:
    return parse_rate(settings.WARDEN_API_AUTH_FAILURE_RATE)


def auth_failures_check(request: HttpRequest | Request) -> None:
    """Raise Throttled if this request's address used up its failed authentications.

    Called before a bearer credential is looked up, so an address that has been
    guessing learns nothing more, not even from a right guess, until its window ends.
    """
    address_auth_failures_check(client_ip(request))


def auth_failure_record(request: HttpRequest | Request) -> None:
    address_auth_failure_record(client_ip(request))


def address_auth_failures_check(address: str) -> None:
    """The same, for callers without an HttpRequest (websocket handshakes: scope["client"])."""
    wait = _window_hit("auth-failures", address, _failure_rate(), count_it=False)
    if wait is not None:
        raise Throttled(wait=wait, detail="Too many failed authentications from this address.")


def address_auth_failure_record(address: str) -> None:
    _window_hit("auth-failures", address, _failure_rate())
