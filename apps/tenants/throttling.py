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

A request's address and principal windows are counted by one call of the script (one round
trip), as one DRF throttle: both are known once DRF has authenticated the request and checked
its permissions, and both were always counted then. The failed-authentication window is asked
earlier, before a bearer credential is looked up, so it keeps a round trip of its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
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


# KEYS: the windows (hashes: hits, start). ARGV: now, then per window: limit, seconds, count
# ('1' or '0'). Returns one entry per window: '' when the hit fits, else the seconds until
# that window ends.
_WINDOWS = """
local now = tonumber(ARGV[1])
local waits = {}
for i, key in ipairs(KEYS) do
  local limit, secs, count = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]), ARGV[3 * i + 1]
  local hits
  if count == '1' then
    hits = redis.call('HINCRBY', key, 'hits', 1)
    if hits == 1 then
      redis.call('HSET', key, 'start', ARGV[1])
      redis.call('EXPIRE', key, secs)
    end
  else
    hits = tonumber(redis.call('HGET', key, 'hits') or '0') + 1
  end
  if hits <= limit then
    waits[i] = ''
  else
    local start = tonumber(redis.call('HGET', key, 'start') or ARGV[1])
    waits[i] = tostring(math.max(1, start + secs - now))
  end
end
return waits
"""

_scripts: dict[str, Any] = {}
_scripts_lock = threading.Lock()


def _windows_script() -> Any:
    """The registered script on a client of the cache's Redis (one pool per process)."""
    location = str(settings.CACHES["default"]["LOCATION"])
    script = _scripts.get(location)
    if script is None:
        with _scripts_lock:
            script = _scripts.get(location)
            if script is None:
                client = redis.Redis(connection_pool=SharedConnectionPool.from_url(location))
                script = _scripts[location] = client.register_script(_WINDOWS)
    return script


@dataclass(frozen=True)
class Window:
    """One counter: `ident`'s window of `scope`. With count_it=False a hit is only asked
    about (would one more fit?), not counted."""

    scope: str
    ident: str
    rate: Rate
    count_it: bool = True


def _windows_hit(windows: Sequence[Window]) -> list[float | None]:
    """Count a hit in each window, in one round trip; per window, the seconds to wait if
    the hit does not fit, else None."""
    keys = [cache.make_and_validate_key(f"throttle:{w.scope}:{w.ident}") for w in windows]
    args: list[Any] = [repr(time.time())]
    for w in windows:
        args += [w.rate.count, w.rate.seconds, int(w.count_it)]
    waits = _windows_script()(keys=keys, args=args)
    return [float(wait) if wait else None for wait in waits]


def _window_hit(scope: str, ident: str, rate: Rate, *, count_it: bool = True) -> float | None:
    [wait] = _windows_hit([Window(scope, ident, rate, count_it)])
    return wait


def _principal(request: Request) -> str | None:
    """The API key, or the user (console session, OIDC JWT), the request authenticated as."""
    identity = request.auth
    if isinstance(identity, Identity) and identity.api_key is not None:
        return f"key:{identity.api_key.id}"
    user = request.user
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return None


class ApiRateThrottle(BaseThrottle):
    """Each request DRF lets through authentication and permissions counts against its
    client address (WARDEN_API_RATE_PER_ADDRESS) and, when it has one, its principal: one
    API key, or one user (WARDEN_API_RATE_PER_PRINCIPAL). Both are counted whatever the
    other says; a full window refuses with the longest wait of those that are full, as DRF
    does with one throttle class per window."""

    def allow_request(self, request: Request, view: Any) -> bool:
        windows = [
            Window("address", client_ip(request), parse_rate(settings.WARDEN_API_RATE_PER_ADDRESS))
        ]
        principal = _principal(request)
        if principal is not None:
            rate = parse_rate(settings.WARDEN_API_RATE_PER_PRINCIPAL)
            windows.append(Window("principal", principal, rate))
        waits = [wait for wait in _windows_hit(windows) if wait is not None]
        self._wait = max(waits, default=None)
        return self._wait is None

    def wait(self) -> float | None:
        return math.ceil(self._wait) if self._wait is not None else None


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
