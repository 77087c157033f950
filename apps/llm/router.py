"""The model router: which endpoint answers a request, and what to do when one fails.

Rules, in order:
1. Tier: the requested tier's endpoints first; a "small" request may fall back to
   "large" endpoints, never the other way (a large request is never downgraded).
2. Data sensitivity: an endpoint is eligible only if it lists the request's
   sensitivity (e.g. "confidential" stays on endpoints marked for it).
3. Capabilities: a request with tools needs an endpoint with native tool calls.
   (A response schema is not a requirement: endpoints without JSON-schema support
   get the request without the constraint, and the loop validates the output.)
4. Context: a request that needs `min_context` tokens skips endpoints with a smaller
   context window (the turn's admission decided it, with the user's consent).
5. Price: an endpoint the platform refuses (`EndpointConfig.refused`: no price and not
   marked free) is never called. When that is the only reason nothing is left, the error
   is `EndpointUnpriced`, so the operator learns what to fix.
6. Health: endpoints whose circuit breaker is open are skipped.
Within a tier, endpoints are tried in the order given. A timeout or unavailability
(5xx, 429, connection refused) fails over to the next endpoint; any other error is
raised as is. Nothing eligible raises `NoEndpointAvailable` saying why.
`candidates` lists what rules 1-5 allow, so a budget can hold enough for any endpoint
a call may fail over to.

Breakers (apps.core.breakers), one per endpoint: the router asks whether a call may go,
makes it without holding any lock (so concurrent requests to an endpoint are never
serialised), then records its outcome. Given a shared store (Redis) and `breaker_keys`
naming each endpoint uniquely, every router in every process sees the same breaker: an
endpoint found down by one worker is skipped by all, and one trial call anywhere closes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from apps.core.breakers import (
    Admission,
    Circuit,
    CircuitBreakers,
    MemoryBreakerStore,
    may_call,
)
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
    EndpointUnpriced,
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
        clock: Clock = time.time,
        *,
        fail_max: int = DEFAULT_FAIL_MAX,
        reset_timeout_s: float = DEFAULT_RESET_TIMEOUT_S,
        breakers: CircuitBreakers | None = None,
        breaker_keys: Mapping[str, str] | None = None,
    ) -> None:
        """`breakers` (default: this router's own, in memory, on `clock` — wall-clock
        seconds) may be shared; `breaker_keys` maps endpoint names to their keys in it
        (default: the names, enough for a router's own breakers)."""
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
        self._breakers = breakers or CircuitBreakers(
            MemoryBreakerStore(), fail_max=fail_max, reset_timeout_s=reset_timeout_s, clock=clock
        )
        self._keys = {name: (breaker_keys or {}).get(name, name) for name in names}
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()

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
        min_context: int = 0,
    ) -> ModelResponse:
        """Answer `request` from the first eligible, healthy endpoint.

        `request` may be a builder called with each endpoint tried, so the loop can
        shape it per endpoint (native tools vs a JSON-schema step; context window).
        A builder is called once per eligible endpoint before the first call, so
        keep it cheap. `allowed` restricts the endpoints by name (an agent's allowed
        endpoints); `min_context` skips endpoints with a smaller context window. Each
        endpoint tried gets its own timeout, so the worst case is the sum of the
        eligible endpoints' timeouts.
        The response's `endpoint` names the endpoint that answered.
        """
        candidates, error = self._eligible(request, tier, sensitivity, allowed, min_context)
        if error is not None:
            raise error
        attempts: list[Attempt] = []
        for endpoint, built, circuit in candidates:
            admission = self._breakers.allow(self._keys[endpoint.name], seen=circuit)
            if not admission:
                # Opened since eligibility was checked, or another caller has the trial.
                continue
            sink = _CountingSink(on_token) if on_token is not None else None
            try:
                response = self._provider(endpoint).complete(built, on_token=sink)
            except MalformedOutput as exc:
                self._record(endpoint.name, exc, admission)
                exc.response = replace(exc.response, endpoint=endpoint.name)
                raise
            except ProviderError as exc:
                self._record(endpoint.name, exc, admission)
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
            self._record(endpoint.name, None, admission)
            return replace(response, endpoint=endpoint.name)

        if not attempts:
            raise NoEndpointAvailable(
                "every eligible model endpoint has an open circuit breaker: "
                + ", ".join(endpoint.name for endpoint, _, _ in candidates)
            )
        summary = "; ".join(f"{a.endpoint}: {a.error}" for a in attempts)
        raise AllEndpointsFailed(
            f"all eligible model endpoints failed: {summary}", attempts=attempts
        ) from attempts[-1].error

    def candidates(
        self,
        request: ModelRequest | RequestBuilder,
        *,
        tier: Tier,
        sensitivity: str,
        allowed: Collection[str] | None = None,
        min_context: int = 0,
    ) -> list[EndpointConfig]:
        """Every endpoint `complete` may try for `request`, in the order it would try them.

        The rules decide, not the breakers: an endpoint whose breaker is open now may be
        given a trial call by the time the request goes, so a hold taken against this list
        (the most any of them can cost) covers whichever one answers. Empty when nothing is
        eligible; `no_endpoint_error` says why.
        """
        eligible, _ = self._by_rules(request, tier, sensitivity, allowed, min_context)
        return [endpoint for endpoint, _ in eligible]

    def first_choice(
        self,
        *,
        tier: Tier,
        sensitivity: str,
        allowed: Collection[str] | None = None,
        min_context: int = 0,
    ) -> EndpointConfig | None:
        """The endpoint a request without tools would try first (None if none is eligible)."""
        candidates, _ = self._eligible(
            ModelRequest(messages=()), tier, sensitivity, allowed, min_context
        )
        return candidates[0][0] if candidates else None

    def no_endpoint_error(
        self,
        request: ModelRequest | RequestBuilder,
        *,
        tier: Tier,
        sensitivity: str,
        allowed: Collection[str] | None = None,
        min_context: int = 0,
    ) -> NoEndpointAvailable | None:
        """The error `complete` would raise before trying any endpoint (`EndpointUnpriced`
        when price is the only reason), or None if it would try one. For refusing a turn
        up front with the reason its first call would fail with."""
        _, error = self._eligible(request, tier, sensitivity, allowed, min_context)
        return error

    def cost(self, endpoint: str | EndpointConfig, usage: Usage) -> Decimal:
        """Price of `usage` on an endpoint (by name or config)."""
        config = self._by_name[endpoint] if isinstance(endpoint, str) else endpoint
        return cost_of(config, usage)

    def endpoint(self, name: str) -> EndpointConfig:
        return self._by_name[name]

    def breaker_state(self, name: str) -> str:
        """The breaker's state; "open" only while its reset timeout is still running."""
        return self._breakers.state(self._keys[name])

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
        min_context: int,
    ) -> tuple[list[tuple[EndpointConfig, ModelRequest, Circuit]], NoEndpointAvailable | None]:
        """Candidates in order, each with its breaker as just read, or the error saying why
        there are none."""
        capable, error = self._by_rules(request, tier, sensitivity, allowed, min_context)
        if error is not None:
            return [], error
        circuits = self._breakers.circuits([self._keys[e.name] for e, _ in capable])
        now = self._breakers.clock()
        reset = self._breakers.reset_timeout_s
        healthy = [
            (endpoint, built, circuit)
            for (endpoint, built), circuit in zip(capable, circuits, strict=True)
            if may_call(circuit, now=now, reset_timeout_s=reset)
        ]
        if not healthy:
            names = ", ".join(e.name for e, _ in capable)
            return [], self._none(
                tier, sensitivity, f"every eligible endpoint has an open circuit breaker ({names})"
            )
        return healthy, None

    def _by_rules(
        self,
        request: ModelRequest | RequestBuilder,
        tier: Tier,
        sensitivity: str,
        allowed: Collection[str] | None,
        min_context: int,
    ) -> tuple[list[tuple[EndpointConfig, ModelRequest]], NoEndpointAvailable | None]:
        """What the rules allow, breakers aside: endpoints in order, each with the request
        as built for it; or the error saying why there are none."""

        def none(reason: str) -> tuple[list[Any], NoEndpointAvailable]:
            return [], self._none(tier, sensitivity, reason)

        pool = list(self.endpoints)
        if allowed is not None:
            pool = [e for e in pool if e.name in allowed]
            if not pool:
                return none("none of the endpoints allowed for this agent is configured")
        tiers = tiers_for(tier)
        pool = [e for t in tiers for e in pool if e.tier == t]
        if not pool:
            return none(f"no endpoint in tier {' or '.join(repr(t) for t in tiers)}")
        pool = [e for e in pool if e.allows(sensitivity)]
        if not pool:
            return none(f"no endpoint in those tiers allows {sensitivity!r} data")
        if min_context > 0:
            pool = [e for e in pool if e.context_window >= min_context]
            if not pool:
                return none(f"no endpoint allowing it has {min_context:,} tokens of context")

        capable: list[tuple[EndpointConfig, ModelRequest]] = []
        missing: set[str] = set()
        for endpoint in pool:
            built = request(endpoint) if callable(request) else request
            if built.tools and not endpoint.supports_tools:
                missing.add("native tool calls")
                continue
            capable.append((endpoint, built))
        if not capable:
            return none(f"no endpoint allowing it supports {', '.join(sorted(missing))}")

        # Last among the rules: price is "the only reason" only if every other rule let
        # the endpoint through.
        priced = [(endpoint, built) for endpoint, built in capable if not endpoint.refused]
        if not priced:
            refusals = "; ".join(f"endpoint {e.name!r} {e.refused}" for e, _ in capable)
            return [], EndpointUnpriced(
                f"no model endpoint for tier {tier!r}, sensitivity {sensitivity!r} can be "
                f"called: {refusals}"
            )
        return priced, None

    @staticmethod
    def _none(tier: Tier, sensitivity: str, reason: str) -> NoEndpointAvailable:
        return NoEndpointAvailable(
            f"no model endpoint for tier {tier!r}, sensitivity {sensitivity!r}: {reason}"
        )

    def _record(self, name: str, error: ProviderError | None, admission: Admission) -> None:
        """Feed one call's outcome to the endpoint's breaker."""
        ok = error is None or _not_a_health_failure(error)
        self._breakers.record(self._keys[name], ok=ok, admission=admission)

    def _provider(self, endpoint: EndpointConfig) -> Provider:
        with self._lock:
            provider = self._providers.get(endpoint.name)
            if provider is None:
                provider = self._factory(endpoint)
                self._providers[endpoint.name] = provider
            return provider
