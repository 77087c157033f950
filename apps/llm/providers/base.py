"""What every model provider is, and how a model endpoint is described.

Framework-free: the integrator maps its `ModelEndpoint` rows onto `EndpointConfig`,
and everything below the router only ever sees these plain values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol, runtime_checkable

from apps.core.egress import STRICT, EgressPolicy
from apps.core.egress.httpx2_guard import GuardedTransport
from apps.llm.types import (
    EndpointNotReady,
    EndpointUnreachable,
    ModelRequest,
    ModelResponse,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    Usage,
)
from apps.llm.types import MalformedOutput as MalformedOutput  # re-exported

ProviderKind = Literal["openai", "anthropic", "local", "scripted"]
Tier = Literal["small", "large"]
TokenCallback = Callable[[str], None]

PROVIDER_KINDS: tuple[str, ...] = ("openai", "anthropic", "local", "scripted")
TIERS: tuple[str, ...] = ("small", "large")
DEFAULT_SENSITIVITIES: frozenset[str] = frozenset({"public", "internal"})
_MILLION = Decimal(1_000_000)
egress_log = logging.getLogger("warden.egress")


@dataclass(frozen=True)
class EndpointConfig:
    """One model endpoint the router may use.

    `api_key` is excluded from repr (and so from logs, tracebacks and events).
    `options` carries provider-specific settings, e.g. `{"script": [...]}` for the
    scripted model or `{"max_tokens_param": "max_completion_tokens"}`.
    `egress` decides which addresses the provider's HTTP client may connect to (default:
    public addresses only; the Django glue passes the platform's policy).
    `not_ready` says why the endpoint can't take requests now (e.g. "building: compiling
    llama.cpp"); empty when it can. A not-ready endpoint's provider fails every request at
    once with `EndpointNotReady`.
    Prices are per million tokens. `is_free` says that zero prices are meant (the scripted
    and local models); `refused` says why the router must never call the endpoint (the glue
    sets it for an endpoint with no price that is not marked free), empty when it may.
    """

    name: str
    kind: ProviderKind
    model: str
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    tier: Tier = "small"
    context_window: int = 8192
    supports_tools: bool = True
    supports_json_schema: bool = False
    allowed_sensitivities: frozenset[str] = DEFAULT_SENSITIVITIES
    price_input_per_mtok: Decimal = Decimal(0)
    price_output_per_mtok: Decimal = Decimal(0)
    timeout_s: float = 60.0
    options: Mapping[str, Any] = field(default_factory=dict)
    egress: EgressPolicy = field(default=STRICT, repr=False)
    not_ready: str = ""
    is_free: bool = False
    refused: str = ""

    def __post_init__(self) -> None:
        if self.kind not in PROVIDER_KINDS:
            raise ValueError(f"endpoint {self.name!r}: unknown provider kind {self.kind!r}")
        if self.tier not in TIERS:
            raise ValueError(f"endpoint {self.name!r}: unknown tier {self.tier!r}")
        if self.timeout_s <= 0:
            raise ValueError(f"endpoint {self.name!r}: timeout_s must be positive")
        # Accept any iterable of strings (a Django ArrayField gives a list) but
        # store a frozenset so the config stays immutable and membership is exact.
        object.__setattr__(self, "allowed_sensitivities", frozenset(self.allowed_sensitivities))
        object.__setattr__(self, "price_input_per_mtok", Decimal(str(self.price_input_per_mtok)))
        object.__setattr__(self, "price_output_per_mtok", Decimal(str(self.price_output_per_mtok)))

    def allows(self, sensitivity: str) -> bool:
        return sensitivity in self.allowed_sensitivities


def cost_of(endpoint: EndpointConfig, usage: Usage) -> Decimal:
    """Price of `usage` on `endpoint`, in the currency its prices are given in."""
    return (
        Decimal(usage.input_tokens) * endpoint.price_input_per_mtok
        + Decimal(usage.output_tokens) * endpoint.price_output_per_mtok
    ) / _MILLION


@runtime_checkable
class Provider(Protocol):
    """A model behind one endpoint.

    When `on_token` is given the provider streams and calls it once per text delta,
    in order; the returned response still carries the whole text. Errors are always
    `ProviderError`s: `ProviderTimeout` / `ProviderUnavailable` (retryable, the router
    fails over), `MalformedOutput` or a plain non-retryable `ProviderError`.
    """

    def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse: ...


class NotReadyProvider:
    """The provider of an endpoint that can't take requests yet: fails at once, clearly."""

    def __init__(self, endpoint: EndpointConfig) -> None:
        self.endpoint = endpoint

    def complete(
        self, request: ModelRequest, *, on_token: TokenCallback | None = None
    ) -> ModelResponse:
        raise EndpointNotReady(
            f"endpoint {self.endpoint.name!r} is not ready: {self.endpoint.not_ready}"
        )


class StreamInterrupted(ProviderUnavailable):
    """A streamed answer broke off after some tokens had reached `on_token`.

    The router does not fail over in that case (the user has already seen part of an
    answer from this endpoint); the loop decides whether to retry the step.
    """

    def __init__(self, message: str, *, tokens_emitted: int) -> None:
        super().__init__(message)
        self.tokens_emitted = tokens_emitted


class TokenSinkError(Exception):
    """Carries an exception raised by the caller's `on_token` out of a provider.

    Providers translate transport failures into `ProviderError`s with a broad
    `except`; an error in the caller's own callback (a websocket publish that failed)
    must not be mistaken for a sick endpoint. Providers re-raise `error` unchanged.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def guard_sink(on_token: TokenCallback) -> TokenCallback:
    """Wrap `on_token` so its exceptions surface as `TokenSinkError`."""

    def emit(text: str) -> None:
        try:
            on_token(text)
        except Exception as exc:
            raise TokenSinkError(exc) from exc

    return emit


def effective_timeout(endpoint: EndpointConfig, request: ModelRequest) -> float:
    """The tighter of the endpoint's and the request's timeout."""
    return min(endpoint.timeout_s, request.timeout_s)


_ERROR_DETAIL_CHARS = 300


def guarded_sdk_client(sdk: Any, endpoint: EndpointConfig) -> Any:
    """The SDK's own default httpx2 client (its timeouts, limits and redirect handling), with
    every connection checked against the endpoint's egress policy and no proxy taken from the
    environment. `sdk` is the `openai` or `anthropic` module."""
    return sdk.DefaultHttpxClient(transport=GuardedTransport(endpoint.egress), trust_env=False)


def map_sdk_error(endpoint: EndpointConfig, exc: Exception, sdk: Any) -> ProviderError:
    """An official SDK's exception → the router's error vocabulary.

    The `openai` and `anthropic` SDKs are generated from one template and share
    their exception classes' names and shapes, so one mapping serves both.
    """
    where = f"endpoint {endpoint.name!r}"
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderTimeout(f"{where}: timed out")
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc
        egress_log.warning(
            "model endpoint %s (%s) unreachable: %s: %s",
            endpoint.name,
            endpoint.base_url,
            type(cause).__name__,
            cause,
            extra={"endpoint": endpoint.name, "egress_cause": f"{type(cause).__name__}: {cause}"},
        )
        return EndpointUnreachable(f"{where}: cannot connect to the endpoint")
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        detail = str(exc.message)[:_ERROR_DETAIL_CHARS]
        if status == 408:
            return ProviderTimeout(f"{where}: HTTP 408 {detail}")
        # 429 is a rate limit; 5xx includes Anthropic's 529 "overloaded".
        if status == 429 or status >= 500:
            return ProviderUnavailable(f"{where}: HTTP {status} {detail}")
        return ProviderError(f"{where}: HTTP {status} {detail}", retryable=False)
    if isinstance(exc, sdk.APIError):
        # A malformed body or an error event inside a stream: the endpoint is sick.
        return ProviderUnavailable(f"{where}: bad response ({str(exc)[:_ERROR_DETAIL_CHARS]})")
    return ProviderUnavailable(f"{where}: unreadable response ({type(exc).__name__}: {exc})")
