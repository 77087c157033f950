"""Circuit breakers whose state every worker process shares.

    breakers = CircuitBreakers(RedisBreakerStore(client, prefix="warden:breaker"), fail_max=3,
                               reset_timeout_s=30)
    if breakers.allow("llm:<endpoint id>"):        # closed, or this caller won the trial
        ok = call()
        breakers.record("llm:<endpoint id>", ok=ok)

The model router (apps/llm/router.py) keeps one per endpoint, the tool wrapper
(apps/tools/executors/wrapper.py) one per tool server. With the Redis store, failures seen by
one process open the breaker for every process on every machine, and once the reset timeout
has passed exactly one caller anywhere makes the trial call (`allow` claims it atomically);
its outcome closes or re-opens the breaker for all.

The states are the classic closed/open/half-open ones (as in pybreaker), but the call is not
run inside the breaker: the caller asks `allow`, makes the call without any lock held (many
threads of a worker may be waiting on one endpoint at once), then `record`s the outcome.
Each store operation is one atomic step (a Lua script in Redis, a lock in memory), so
concurrent outcomes from threads or processes never lose a failure or open the breaker twice.

Times are wall-clock seconds (`time.time`), since another machine reads `opened_at`. A trial
whose caller died (worker killed mid-call) is given up after another reset timeout, so a
half-open breaker cannot stay stuck.

If Redis is unreachable, `FallbackBreakerStore` carries on with this process's own memory
and logs a warning (see there). Framework-free; `adapters.breaker_store()` builds the store
from the settings.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol, TypeVar

import redis

logger = logging.getLogger("warden.breakers")

CLOSED: Literal["closed"] = "closed"
OPEN: Literal["open"] = "open"
HALF_OPEN: Literal["half-open"] = "half-open"
State = Literal["closed", "open", "half-open"]

Clock = Callable[[], float]
T = TypeVar("T")


@dataclass(frozen=True)
class Circuit:
    """One breaker's stored state. `opened_at` and `trial_at` are wall-clock seconds."""

    state: State = CLOSED
    failures: int = 0  # consecutive failures while closed
    opened_at: float | None = None
    trial_at: float | None = None  # when the current half-open trial call was let through


class Admission(enum.IntEnum):
    """`allow`'s answer; falsy when refused, so `if breakers.allow(key)` reads naturally."""

    REFUSED = 0
    ALLOWED = 1
    # Allowed, and the breaker had nothing recorded (closed, no failures): a success then
    # has nothing to reset, so `record(..., admission=PRISTINE)` skips the store.
    PRISTINE = 2


def visible_state(circuit: Circuit, *, now: float, reset_timeout_s: float) -> State:
    """What an operator should see: "open" only while calls are refused by the timeout;
    "half-open" once a trial may go (or is under way)."""
    if circuit.state == OPEN:
        assert circuit.opened_at is not None
        return OPEN if now - circuit.opened_at < reset_timeout_s else HALF_OPEN
    return circuit.state


def may_call(circuit: Circuit, *, now: float, reset_timeout_s: float) -> bool:
    """Whether a call could go now (without claiming the trial)."""
    if circuit.state == CLOSED:
        return True
    if circuit.state == OPEN:
        assert circuit.opened_at is not None
        return now - circuit.opened_at >= reset_timeout_s
    # Half-open: someone's trial is under way, unless its caller vanished.
    return circuit.trial_at is None or now - circuit.trial_at >= reset_timeout_s


def after_outcome(circuit: Circuit, *, ok: bool, now: float, fail_max: int) -> Circuit:
    """The state after one call's outcome."""
    if circuit.state == OPEN:
        # A call let through before the breaker opened: the trial decides, not this.
        return circuit
    if ok:
        return Circuit() if circuit != Circuit() else circuit
    if circuit.state == HALF_OPEN or circuit.failures + 1 >= fail_max:
        return Circuit(state=OPEN, opened_at=now)
    return replace(circuit, failures=circuit.failures + 1)


class BreakerStore(Protocol):
    """Where breakers keep their state. Every method is atomic for its key."""

    def get(self, keys: list[str]) -> list[Circuit]: ...

    def allow(self, key: str, *, now: float, reset_timeout_s: float) -> Admission:
        """Whether a call may go; when it is the trial after the reset timeout, claim it so
        no other caller (thread, process, machine) gets one until it is reported."""
        ...

    def record(self, key: str, *, ok: bool, now: float, fail_max: int) -> State: ...


class MemoryBreakerStore:
    """This process's own breakers (tests, `WARDEN_BREAKER_STORAGE=memory`, and the fallback
    while Redis is unreachable)."""

    def __init__(self) -> None:
        self._circuits: dict[str, Circuit] = {}
        self._lock = threading.Lock()

    def get(self, keys: list[str]) -> list[Circuit]:
        with self._lock:
            return [self._circuits.get(key, Circuit()) for key in keys]

    def allow(self, key: str, *, now: float, reset_timeout_s: float) -> Admission:
        with self._lock:
            circuit = self._circuits.get(key, Circuit())
            if circuit == Circuit():
                return Admission.PRISTINE
            if not may_call(circuit, now=now, reset_timeout_s=reset_timeout_s):
                return Admission.REFUSED
            if circuit.state != CLOSED:
                self._circuits[key] = replace(circuit, state=HALF_OPEN, trial_at=now)
            return Admission.ALLOWED

    def record(self, key: str, *, ok: bool, now: float, fail_max: int) -> State:
        with self._lock:
            circuit = after_outcome(
                self._circuits.get(key, Circuit()), ok=ok, now=now, fail_max=fail_max
            )
            if circuit == Circuit():
                self._circuits.pop(key, None)
            else:
                self._circuits[key] = circuit
            return circuit.state


# The same transitions as `may_call`/`after_outcome`, run inside Redis so that a read and
# the write it decides are one step for every process. A hash per breaker:
# state, failures, opened_at, trial_at. Times travel as strings to keep their precision.
_ALLOW = """
local h = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'trial_at', 'failures')
if not (h[1] or h[4]) then return 2 end
local state = h[1] or 'closed'
if state == 'closed' then return 1 end
local now, reset = tonumber(ARGV[1]), tonumber(ARGV[2])
if state == 'open' then
  if now - tonumber(h[2]) < reset then return 0 end
elseif h[3] and now - tonumber(h[3]) < reset then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'half-open', 'trial_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

_RECORD = """
local h = redis.call('HMGET', KEYS[1], 'state', 'failures')
local state, failures = h[1] or 'closed', tonumber(h[2] or '0')
if state == 'open' then return state end
if ARGV[1] == '1' then
  if state ~= 'closed' or failures > 0 then redis.call('DEL', KEYS[1]) end
  return 'closed'
end
if state == 'half-open' or failures + 1 >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return 'open'
end
redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 'closed'
"""


class RedisBreakerStore:
    """Breakers in Redis, shared by every process that uses the same Redis and prefix.

    Keys are `<prefix>:<key>`, one hash each, expiring `ttl_s` after the last change (a closed
    breaker with no failures has no key at all), so breakers of deleted servers go away.
    Raises `redis.RedisError` when Redis cannot be reached; wrap it in FallbackBreakerStore.
    """

    def __init__(self, client: redis.Redis, *, prefix: str, ttl_s: int = 86_400) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._allow = client.register_script(_ALLOW)
        self._record = client.register_script(_RECORD)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:{key}"

    def get(self, keys: list[str]) -> list[Circuit]:
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(self._key(key))
        return [_circuit(raw) for raw in pipe.execute()]

    def allow(self, key: str, *, now: float, reset_timeout_s: float) -> Admission:
        allowed = self._allow(keys=[self._key(key)], args=[repr(now), reset_timeout_s, self._ttl_s])
        return Admission(int(allowed))

    def record(self, key: str, *, ok: bool, now: float, fail_max: int) -> State:
        state = self._record(
            keys=[self._key(key)], args=[int(ok), repr(now), fail_max, self._ttl_s]
        )
        return _state(state)


def _state(raw: bytes | str) -> State:
    text = raw.decode() if isinstance(raw, bytes) else raw
    if text not in (CLOSED, OPEN, HALF_OPEN):
        raise ValueError(f"unknown breaker state {text!r}")
    return text  # type: ignore[return-value]


def _circuit(raw: dict[bytes, bytes]) -> Circuit:
    if not raw:
        return Circuit()

    def number(field: bytes) -> float | None:
        return float(raw[field]) if field in raw else None

    return Circuit(
        state=_state(raw.get(b"state", b"closed")),
        failures=int(raw.get(b"failures", b"0")),
        opened_at=number(b"opened_at"),
        trial_at=number(b"trial_at"),
    )


class FallbackBreakerStore:
    """The shared store, or this process's memory while the shared one is unreachable.

    Failing closed (refusing every call because the breakers' storage is down) would turn a
    Redis outage into an outage of every model and tool; pretending all is healthy would call
    a dead endpoint forever. So while Redis is down each process keeps its own breakers, as
    before they were shared: they still open on failures this process sees. A warning is
    logged once per outage, and Redis is tried again every `retry_after_s` (not on every call,
    which would add a connect timeout to each one). What the process learnt meanwhile stays in
    its memory and is not merged back; the shared state takes over again when Redis answers.
    """

    def __init__(
        self,
        primary: BreakerStore,
        *,
        fallback: BreakerStore | None = None,
        retry_after_s: float = 5.0,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback or MemoryBreakerStore()
        self._retry_after_s = retry_after_s
        self._monotonic = monotonic
        self._down_until: float | None = None
        self._lock = threading.Lock()

    @property
    def degraded(self) -> bool:
        return self._down_until is not None

    def _store(self) -> BreakerStore:
        with self._lock:
            if self._down_until is not None and self._monotonic() < self._down_until:
                return self.fallback
        return self.primary

    def _run(self, operation: Callable[[BreakerStore], T]) -> T:
        store = self._store()
        if store is self.fallback:
            return operation(store)
        try:
            result = operation(store)
        except redis.RedisError as exc:
            with self._lock:
                first = self._down_until is None
                self._down_until = self._monotonic() + self._retry_after_s
            if first:
                logger.warning(
                    "circuit breaker storage unreachable; each process keeps its own "
                    "breakers until it is back",
                    extra={"error": f"{type(exc).__name__}: {exc}"},
                )
            return operation(self.fallback)
        if self._down_until is not None:
            with self._lock:
                recovered, self._down_until = self._down_until is not None, None
            if recovered:
                logger.warning("circuit breaker storage reachable again; breakers are shared")
        return result

    def get(self, keys: list[str]) -> list[Circuit]:
        return self._run(lambda store: store.get(keys))

    def allow(self, key: str, *, now: float, reset_timeout_s: float) -> Admission:
        return self._run(lambda store: store.allow(key, now=now, reset_timeout_s=reset_timeout_s))

    def record(self, key: str, *, ok: bool, now: float, fail_max: int) -> State:
        return self._run(lambda store: store.record(key, ok=ok, now=now, fail_max=fail_max))


class CircuitBreakers:
    """A family of breakers with one policy (fail_max, reset timeout) over one store.

    `fail_max` consecutive failures open a breaker; after `reset_timeout_s` one trial call is
    let through: success closes it, failure re-opens it for another timeout. What counts as a
    failure is the caller's business (a bad request says nothing about an endpoint's health).
    """

    def __init__(
        self,
        store: BreakerStore | None = None,
        *,
        fail_max: int = 5,
        reset_timeout_s: float = 30.0,
        clock: Clock = time.time,
    ) -> None:
        self.store: BreakerStore = store if store is not None else MemoryBreakerStore()
        self.fail_max = fail_max
        self.reset_timeout_s = reset_timeout_s
        self.clock = clock

    def state(self, key: str) -> State:
        (circuit,) = self.store.get([key])
        return visible_state(circuit, now=self.clock(), reset_timeout_s=self.reset_timeout_s)

    def circuits(self, keys: list[str]) -> list[Circuit]:
        """The stored state of each key (one round trip for all of them)."""
        return self.store.get(keys)

    def available(self, keys: list[str]) -> list[bool]:
        """Per key, whether a call could go now (one round trip for all of them)."""
        now = self.clock()
        return [
            may_call(c, now=now, reset_timeout_s=self.reset_timeout_s) for c in self.circuits(keys)
        ]

    def allow(self, key: str, *, seen: Circuit | None = None) -> Admission:
        """Whether a call may go now. `seen`: the circuit as the caller just read it; if
        nothing was recorded then, the call goes without asking the store again."""
        if seen is not None and seen == Circuit():
            return Admission.PRISTINE
        return self.store.allow(key, now=self.clock(), reset_timeout_s=self.reset_timeout_s)

    def record(self, key: str, *, ok: bool, admission: Admission | None = None) -> State:
        """Feed a call's outcome. A success of a call admitted PRISTINE is not stored: the
        breaker had nothing to reset. (Failures another process recorded during the call
        then stand, where storing the success would have cleared them: a breaker shared by
        many callers counts failures, not strictly consecutive ones. That saves a round
        trip on every healthy call.)"""
        if ok and admission is Admission.PRISTINE:
            return CLOSED
        state = self.store.record(key, ok=ok, now=self.clock(), fail_max=self.fail_max)
        if not ok and state == OPEN:
            logger.warning("circuit breaker open", extra={"breaker": key})
        return state
