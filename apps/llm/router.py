"""The model router: which endpoint answers a request, and what to do when one fails.

Rules, in order:
1. Tier: the requested tier's endpoints first; a "small" request may fall back to
   "large" endpoints, never the other way (a large request is never downgraded).
2. Data sensitivity: an endpoint is eligible only if it lists the request's
   sensitivity (e.g. "confidential" stays on endpoints marked for it).
3. Capabilities: a request with tools needs an endpoint with native tool calls.
   (A response schema is not a requirement: endpoints without JSON-schema support
   get the request without the constraint, and the loop validates the output.)
4. Health: endpoints whose circuit breaker is open are skipped.
Within a tier, endpoints are tried in the order given. A timeout or unavailability
(5xx, 429, connection refused) fails over to the next endpoint; any other error is
raised as is. Nothing eligible raises `NoEndpointAvailable` saying why.

Breakers are pybreaker `CircuitBreaker`s, one per endpoint, used as state machines:
the outcome of a call is recorded after it, instead of running the call inside
`breaker.call()`, because pybreaker holds the breaker's lock for the whole guarded
call and so would serialise every concurrent request to an endpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pybreaker

from apps.llm.providers.base import (
    EndpointConfig,
    MalformedOutput,
    Provider,
    StreamInterrupted,
    Tier,
    TokenCallback,
    cost_of,
)
from apps.llm.types import (
    ModelRequest,
    ModelResponse,
    NoEndpointAvailable,
    ProviderError,
    ProviderUnavailable,
    Usage,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
ProviderFactory = Callable[[EndpointConfig], Provider]
RequestBuilder = Callable[[EndpointConfig], ModelRequest]

DEFAULT_FAIL_MAX = 3
DEFAULT_RESET_TIMEOUT_S = 30.0


def escalate(tier: Tier) -> Tier:
    """The next tier up: what the loop asks for after repeated malformed output."""
    return "large"


def tiers_for(tier: Tier) -> tuple[Tier, ...]:
    """Tiers to try, in order, for a requested tier (fallback only upwards)."""
    return ("small", "large") if tier == "small" else ("large",)


@dataclass(frozen=True)
class Attempt:
    """One endpoint tried during a `complete` call."""

    endpoint: str
    error: ProviderError


class AllEndpointsFailed(ProviderUnavailable):
    """Every eligible endpoint was tried and failed with a retryable error."""

    def __init__(self, message: str, *, attempts: Sequence[Attempt]) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)


class _CountingSink:
    """Passes tokens on and counts them, to know whether a failed stream was seen."""

    def __init__(self, sink: TokenCallback) -> None:
        self._sink = sink
        self.count = 0

    def __call__(self, text: str) -> None:
        self.count += 1
        self._sink(text)


class _ClockStorage(pybreaker.CircuitMemoryStorage):
    """Breaker storage that measures the open period on the router's clock.

    pybreaker compares `opened_at` with `datetime.now(UTC)`; reporting `opened_at`
    as "now minus the elapsed time on our clock" makes that comparison the same as
    `clock() - opened_clock < reset_timeout`, so an injected clock drives it.
    """

    def __init__(self, clock: Clock) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self._clock = clock
        self.opened_clock: float | None = None

    @property
    def opened_at(self) -> datetime | None:
        if self.opened_clock is None:
            return None
        return datetime.now(UTC) - timedelta(seconds=self._clock() - self.opened_clock)

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self.opened_clock = self._clock()


def _not_a_health_failure(exc: BaseException) -> bool:
    # Bad requests, auth errors and malformed model output say nothing about
    # whether the endpoint is up, so they don't count towards opening the breaker.
    return isinstance(exc, ProviderError) and not exc.retryable


class ModelRouter:
    """Chooses an endpoint per request and fails over between them."""

    def __init__(
        self,
        endpoints: Sequence[EndpointConfig],
        provider_factory: ProviderFactory | None = None,
        clock: Clock = time.monotonic,
        *,
        fail_max: int = DEFAULT_FAIL_MAX,
        reset_timeout_s: float = DEFAULT_RESET_TIMEOUT_S,
    ) -> None:
        names = [endpoint.name for endpoint in endpoints]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate endpoint names: {', '.join(duplicates)}")
        if provider_factory is None:
            from apps.llm.providers import build_provider

            provider_factory = build_provider
        self.endpoints: tuple[EndpointConfig, ...] = tuple(endpoints)
        self._by_name = {endpoint.name: endpoint for endpoint in endpoints}
        self._factory = provider_factory
        self._clock = clock
        self._reset_timeout_s = reset_timeout_s
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()
        self._storages = {name: _ClockStorage(clock) for name in names}
        self._breakers = {
            name: pybreaker.CircuitBreaker(
                fail_max=fail_max,
                reset_timeout=reset_timeout_s,
                exclude=[_not_a_health_failure],
                state_storage=self._storages[name],
                name=name,
                throw_new_error_on_trip=False,
            )
            for name in names
        }

    escalate = staticmethod(escalate)

    # -- public -------------------------------------------------------------------

    def complete(
        self,
        request: ModelRequest | RequestBuilder,
        *,
        tier: Tier,
        sensitivity: str,
        on_token: TokenCallback | None = None,
        allowed: Collection[str] | None = None,
    ) -> ModelResponse:
        """Answer `request` from the first eligible, healthy endpoint.

        `request` may be a builder called with each endpoint tried, so the loop can
        shape it per endpoint (native tools vs a JSON-schema step; context window).
        A builder is called once per eligible endpoint before the first call, so
        keep it cheap. `allowed` restricts the endpoints by name (an agent's allowed
        endpoints). Each endpoint tried gets its own timeout, so the worst case is
        the sum of the eligible endpoints' timeouts.
        The response's `endpoint` names the endpoint that answered.
        """
        candidates, reasons = self._eligible(request, tier, sensitivity, allowed)
        if not candidates:
            raise NoEndpointAvailable(
                f"no model endpoint for tier {tier!r}, sensitivity {sensitivity!r}: "
                + "; ".join(reasons)
            )
        attempts: list[Attempt] = []
        for endpoint, built in candidates:
            if self._is_open(endpoint.name):
                # Opened by a concurrent request since eligibility was checked.
                continue
            sink = _CountingSink(on_token) if on_token is not None else None
            try:
                response = self._provider(endpoint).complete(built, on_token=sink)
            except MalformedOutput as exc:
                self._record(endpoint.name, exc)
                exc.response = replace(exc.response, endpoint=endpoint.name)
                raise
            except ProviderError as exc:
                self._record(endpoint.name, exc)
                if not exc.retryable:
                    raise
                if sink is not None and sink.count:
                    raise StreamInterrupted(
                        f"endpoint {endpoint.name!r} failed after streaming {sink.count} "
                        f"token(s): {exc}",
                        tokens_emitted=sink.count,
                    ) from exc
                attempts.append(Attempt(endpoint.name, exc))
                logger.warning(
                    "model endpoint failed, trying the next one",
                    extra={"endpoint": endpoint.name, "error": str(exc)},
                )
                continue
            self._record(endpoint.name, None)
            return replace(response, endpoint=endpoint.name)

        if not attempts:
            raise NoEndpointAvailable(
                "every eligible model endpoint has an open circuit breaker: "
                + ", ".join(endpoint.name for endpoint, _ in candidates)
            )
        summary = "; ".join(f"{a.endpoint}: {a.error}" for a in attempts)
        raise AllEndpointsFailed(
            f"all eligible model endpoints failed: {summary}", attempts=attempts
        ) from attempts[-1].error

    def first_choice(
        self, *, tier: Tier, sensitivity: str, allowed: Collection[str] | None = None
    ) -> EndpointConfig | None:
        """The endpoint a request without tools would try first (None if none is eligible)."""
        candidates, _ = self._eligible(ModelRequest(messages=()), tier, sensitivity, allowed)
        return candidates[0][0] if candidates else None

    def cost(self, endpoint: str | EndpointConfig, usage: Usage) -> Decimal:
        """Price of `usage` on an endpoint (by name or config)."""
        config = self._by_name[endpoint] if isinstance(endpoint, str) else endpoint
        return cost_of(config, usage)

    def endpoint(self, name: str) -> EndpointConfig:
        return self._by_name[name]

    def breaker_state(self, name: str) -> str:
        """The breaker's state; "open" only while its reset timeout is still running."""
        if self._is_open(name):
            return pybreaker.STATE_OPEN
        state = self._breakers[name].current_state
        return pybreaker.STATE_HALF_OPEN if state == pybreaker.STATE_OPEN else state

    def close(self) -> None:
        """Release the providers' HTTP connection pools."""
        with self._lock:
            providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            closer = getattr(provider, "close", None)
            if callable(closer):
                closer()

    # -- internals ----------------------------------------------------------------

    def _eligible(
        self,
        request: ModelRequest | RequestBuilder,
        tier: Tier,
        sensitivity: str,
        allowed: Collection[str] | None,
    ) -> tuple[list[tuple[EndpointConfig, ModelRequest]], list[str]]:
        """Candidates in order, or the reasons why there are none."""
        pool = list(self.endpoints)
        if allowed is not None:
            pool = [e for e in pool if e.name in allowed]
            if not pool:
                return [], ["none of the endpoints allowed for this agent is configured"]
        tiers = tiers_for(tier)
        pool = [e for t in tiers for e in pool if e.tier == t]
        if not pool:
            return [], [f"no endpoint in tier {' or '.join(repr(t) for t in tiers)}"]
        pool = [e for e in pool if e.allows(sensitivity)]
        if not pool:
            return [], [f"no endpoint in those tiers allows {sensitivity!r} data"]

        capable: list[tuple[EndpointConfig, ModelRequest]] = []
        missing: set[str] = set()
        for endpoint in pool:
            built = request(endpoint) if callable(request) else request
            if built.tools and not endpoint.supports_tools:
                missing.add("native tool calls")
                continue
            capable.append((endpoint, built))
        if not capable:
            return [], [f"no endpoint allowing it supports {', '.join(sorted(missing))}"]

        healthy = [(e, r) for e, r in capable if not self._is_open(e.name)]
        if not healthy:
            names = ", ".join(e.name for e, _ in capable)
            return [], [f"every eligible endpoint has an open circuit breaker ({names})"]
        return healthy, []

    def _is_open(self, name: str) -> bool:
        """Open and still inside its reset timeout (after it, one trial is let through)."""
        if self._breakers[name].current_state != pybreaker.STATE_OPEN:
            return False
        opened = self._storages[name].opened_clock
        return opened is not None and self._clock() - opened < self._reset_timeout_s

    def _record(self, name: str, error: ProviderError | None) -> None:
        """Feed one call's outcome to the endpoint's breaker."""

        def outcome() -> None:
            if error is not None:
                raise error

        try:
            self._breakers[name].call(outcome)
        except (ProviderError, pybreaker.CircuitBreakerError):
            pass

    def _provider(self, endpoint: EndpointConfig) -> Provider:
        with self._lock:
            provider = self._providers.get(endpoint.name)
            if provider is None:
                provider = self._factory(endpoint)
                self._providers[endpoint.name] = provider
            return provider
