"""The model router: choice by rule, failover, circuit breakers, escalation, cost."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from apps.llm.providers import build_provider
from apps.llm.providers.base import EndpointConfig, MalformedOutput, StreamInterrupted
from apps.llm.router import DEFAULT_RESET_TIMEOUT_S, AllEndpointsFailed, ModelRouter, escalate
from apps.llm.types import (
    EndpointUnpriced,
    Message,
    ModelRequest,
    ModelResponse,
    NoEndpointAvailable,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ToolSpec,
    Usage,
)
from tests.llm.servers import (
    LOOPBACK,
    chunk,
    completion,
    error,
    hang,
    reply,
    sse,
    sse_then_hang,
)

REQUEST = ModelRequest(messages=(Message("user", "hello"),))
TOOL = ToolSpec("search", "Search", {"type": "object", "properties": {}})


def compat(name: str, url: str, **overrides: object) -> EndpointConfig:
    values: dict[str, object] = {
        "name": name,
        "kind": "openai",
        "model": f"model-{name}",
        "base_url": url,
        "timeout_s": 5.0,
        "egress": LOOPBACK,
    }
    values.update(overrides)
    return EndpointConfig(**values)  # type: ignore[arg-type]


class StubProvider:
    """Answers with its endpoint's name, or raises what the test queued."""

    def __init__(self, endpoint: EndpointConfig, outcomes: dict[str, list[object]]) -> None:
        self.endpoint = endpoint
        self.outcomes = outcomes
        self.calls: list[ModelRequest] = []

    def complete(self, request, *, on_token=None):
        self.calls.append(request)
        queued = self.outcomes.get(self.endpoint.name) or []
        outcome = queued.pop(0) if queued else None
        if isinstance(outcome, Exception):
            raise outcome
        return ModelResponse(text=f"from {self.endpoint.name}", usage=Usage(10, 5))


class StubFactory:
    def __init__(self, **outcomes: list[object]) -> None:
        self.outcomes = dict(outcomes)
        self.providers: dict[str, StubProvider] = {}

    def __call__(self, endpoint: EndpointConfig) -> StubProvider:
        provider = StubProvider(endpoint, self.outcomes)
        self.providers[endpoint.name] = provider
        return provider

    def calls(self, name: str) -> int:
        provider = self.providers.get(name)
        return len(provider.calls) if provider else 0


def stub(name: str, **overrides: object) -> EndpointConfig:
    values: dict[str, object] = {"name": name, "kind": "scripted", "model": name}
    values.update(overrides)
    return EndpointConfig(**values)  # type: ignore[arg-type]


# -- failover against real servers ----------------------------------------------------


def test_500_fails_over_to_next_endpoint(make_server, clock):
    broken = make_server(error(500))
    healthy = make_server(reply(completion("fine")))
    router = ModelRouter([compat("a", broken.url), compat("b", healthy.url)], build_provider, clock)

    response = router.complete(REQUEST, tier="small", sensitivity="internal")

    assert (response.text, response.endpoint) == ("fine", "b")
    assert len(broken.received) == 1 and len(healthy.received) == 1
    assert healthy.bodies[0]["model"] == "model-b"


def test_500_once_then_success_retries_on_the_next_call(make_server, clock):
    flaky = make_server(error(500), reply(completion("recovered")))
    backup = make_server(reply(completion("backup")))
    router = ModelRouter([compat("a", flaky.url), compat("b", backup.url)], build_provider, clock)

    first = router.complete(REQUEST, tier="small", sensitivity="internal")
    second = router.complete(REQUEST, tier="small", sensitivity="internal")

    assert (first.endpoint, second.endpoint) == ("b", "a")
    assert second.text == "recovered"


def test_timeout_fails_over_to_next_endpoint(make_server, clock):
    slow = make_server(hang())
    fast = make_server(reply(completion("quick")))
    router = ModelRouter(
        [compat("slow", slow.url, timeout_s=0.3), compat("fast", fast.url)], build_provider, clock
    )

    response = router.complete(REQUEST, tier="small", sensitivity="internal")

    assert response.endpoint == "fast"
    assert len(slow.received) == 1


def test_breaker_opens_after_fail_max_and_closes_after_reset_timeout(make_server, clock):
    primary = make_server(error(503), error(503), reply(completion("primary back")))
    backup = make_server(default=reply(completion("backup")))
    router = ModelRouter(
        [compat("primary", primary.url), compat("backup", backup.url)],
        build_provider,
        clock,
        fail_max=2,
        reset_timeout_s=30,
    )

    def ask() -> str:
        return router.complete(REQUEST, tier="small", sensitivity="internal").endpoint

    assert [ask(), ask()] == ["backup", "backup"]
    assert router.breaker_state("primary") == "open"

    # While open, the primary is not even contacted.
    clock.advance(29)
    assert ask() == "backup"
    assert len(primary.received) == 2

    # After the reset timeout one trial call goes through; it succeeds and closes.
    clock.advance(2)
    assert router.breaker_state("primary") == "half-open"
    assert ask() == "primary"
    assert router.breaker_state("primary") == "closed"
    assert len(primary.received) == 3


def test_failed_trial_call_reopens_the_breaker(clock):
    factory = StubFactory(a=[ProviderUnavailable("down"), ProviderUnavailable("still down"), None])
    router = ModelRouter([stub("a"), stub("b")], factory, clock, fail_max=1, reset_timeout_s=10)

    assert router.complete(REQUEST, tier="small", sensitivity="internal").endpoint == "b"
    clock.advance(10)
    assert router.complete(REQUEST, tier="small", sensitivity="internal").endpoint == "b"
    assert factory.calls("a") == 2
    assert router.breaker_state("a") == "open"
    # Re-opened at the trial: a full reset timeout must pass again.
    clock.advance(9)
    assert router.complete(REQUEST, tier="small", sensitivity="internal").endpoint == "b"
    assert factory.calls("a") == 2
    clock.advance(1)
    assert router.complete(REQUEST, tier="small", sensitivity="internal").endpoint == "a"


def test_non_retryable_error_does_not_fail_over_nor_trip_the_breaker(make_server, clock):
    rejecting = make_server(default=error(400, "bad request"))
    other = make_server(default=reply(completion("other")))
    router = ModelRouter(
        [compat("a", rejecting.url), compat("b", other.url)], build_provider, clock, fail_max=2
    )

    for _ in range(3):
        with pytest.raises(ProviderError) as caught:
            router.complete(REQUEST, tier="small", sensitivity="internal")
        assert not caught.value.retryable

    assert len(other.received) == 0
    assert router.breaker_state("a") == "closed"


def test_stream_that_breaks_after_tokens_is_not_replayed_elsewhere(make_server, clock):
    dying = make_server(sse_then_hang([chunk(content="Half an ")]))
    other = make_server(default=sse([chunk(content="other answer")]))
    router = ModelRouter(
        [compat("a", dying.url, timeout_s=0.3), compat("b", other.url)], build_provider, clock
    )
    tokens: list[str] = []

    with pytest.raises(StreamInterrupted) as caught:
        router.complete(REQUEST, tier="small", sensitivity="internal", on_token=tokens.append)

    assert tokens == ["Half an "]
    assert caught.value.tokens_emitted == 1 and caught.value.retryable
    assert isinstance(caught.value.__cause__, ProviderTimeout)
    assert len(other.received) == 0


def test_streaming_through_the_router_names_the_endpoint(make_server, clock):
    broken = make_server(error(502))
    streaming = make_server(sse([chunk(content="to"), chunk(content="ken")]))
    router = ModelRouter(
        [compat("a", broken.url), compat("b", streaming.url)], build_provider, clock
    )
    tokens: list[str] = []

    response = router.complete(
        REQUEST, tier="small", sensitivity="internal", on_token=tokens.append
    )

    # A failure before any token was shown does fail over.
    assert tokens == ["to", "ken"]
    assert (response.text, response.endpoint) == ("token", "b")


def test_concurrent_requests_to_one_endpoint_are_not_serialised(clock):
    # Both calls must be inside the provider at once to pass the barrier; a router
    # that held a lock (e.g. pybreaker's) around the call would break it.
    barrier = threading.Barrier(2, timeout=5)

    class Meeting(StubProvider):
        def complete(self, request, *, on_token=None):
            barrier.wait()
            return super().complete(request, on_token=on_token)

    router = ModelRouter([stub("a")], lambda e: Meeting(e, {}), clock)
    results: list[str] = []

    def call() -> None:
        results.append(router.complete(REQUEST, tier="small", sensitivity="internal").endpoint)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert results == ["a", "a"]


def test_every_endpoint_failing_raises_all_endpoints_failed(clock):
    factory = StubFactory(a=[ProviderTimeout("slow")], b=[ProviderUnavailable("503")])
    router = ModelRouter([stub("a"), stub("b")], factory, clock)

    with pytest.raises(AllEndpointsFailed) as caught:
        router.complete(REQUEST, tier="small", sensitivity="internal")

    assert caught.value.retryable
    assert [a.endpoint for a in caught.value.attempts] == ["a", "b"]
    assert "slow" in str(caught.value) and "503" in str(caught.value)


# -- choice by rule ---------------------------------------------------------------------


def test_confidential_data_only_goes_to_endpoints_marked_for_it(make_server, clock):
    public = make_server(default=reply(completion("public")))
    private = make_server(default=reply(completion("private")))
    router = ModelRouter(
        [
            compat("cloud", public.url, allowed_sensitivities={"public", "internal"}),
            compat(
                "onprem", private.url, allowed_sensitivities={"public", "internal", "confidential"}
            ),
        ],
        build_provider,
        clock,
    )

    assert router.complete(REQUEST, tier="small", sensitivity="confidential").endpoint == "onprem"
    assert router.complete(REQUEST, tier="small", sensitivity="internal").endpoint == "cloud"
    assert len(public.received) == 1  # only the internal request


def test_no_endpoint_for_sensitivity_says_why(clock):
    factory = StubFactory()
    router = ModelRouter([stub("cloud", allowed_sensitivities={"public"})], factory, clock)

    with pytest.raises(NoEndpointAvailable) as caught:
        router.complete(REQUEST, tier="small", sensitivity="confidential")

    assert "'confidential'" in str(caught.value)
    assert factory.calls("cloud") == 0


def test_failover_never_crosses_the_sensitivity_rule(clock):
    factory = StubFactory(secure=[ProviderUnavailable("down")])
    router = ModelRouter(
        [
            stub("secure", allowed_sensitivities={"confidential"}),
            stub("cloud", allowed_sensitivities={"public", "internal"}),
        ],
        factory,
        clock,
    )

    with pytest.raises(AllEndpointsFailed):
        router.complete(REQUEST, tier="small", sensitivity="confidential")
    assert factory.calls("cloud") == 0


def test_small_prefers_small_and_falls_back_to_large(clock):
    factory = StubFactory(cheap=[ProviderUnavailable("down")])
    # Listed large first: the tier rule, not list order, decides.
    router = ModelRouter([stub("big", tier="large"), stub("cheap", tier="small")], factory, clock)

    assert router.complete(REQUEST, tier="small", sensitivity="internal").endpoint == "big"
    assert factory.calls("cheap") == 1
    assert router.complete(REQUEST, tier="small", sensitivity="internal").endpoint == "cheap"


def test_large_is_never_downgraded_to_small(clock):
    factory = StubFactory()
    router = ModelRouter([stub("cheap", tier="small")], factory, clock)

    with pytest.raises(NoEndpointAvailable) as caught:
        router.complete(REQUEST, tier="large", sensitivity="internal")

    assert "'large'" in str(caught.value)
    assert factory.calls("cheap") == 0


def test_all_breakers_open_says_so(clock):
    factory = StubFactory(a=[ProviderUnavailable("x")], b=[ProviderTimeout("y")])
    router = ModelRouter([stub("a"), stub("b")], factory, clock, fail_max=1)
    with pytest.raises(AllEndpointsFailed):
        router.complete(REQUEST, tier="small", sensitivity="internal")

    with pytest.raises(NoEndpointAvailable) as caught:
        router.complete(REQUEST, tier="small", sensitivity="internal")

    assert "open circuit breaker" in str(caught.value)
    assert factory.calls("a") == 1 and factory.calls("b") == 1


def test_tool_requests_skip_endpoints_without_native_tool_calls(clock):
    factory = StubFactory()
    router = ModelRouter(
        [stub("json-only", supports_tools=False, supports_json_schema=True), stub("tools")],
        factory,
        clock,
    )
    with_tools = ModelRequest(messages=REQUEST.messages, tools=(TOOL,))

    assert router.complete(with_tools, tier="small", sensitivity="internal").endpoint == "tools"
    assert router.complete(REQUEST, tier="small", sensitivity="internal").endpoint == "json-only"


def test_no_endpoint_with_native_tools_says_why(clock):
    router = ModelRouter([stub("json-only", supports_tools=False)], StubFactory(), clock)
    with_tools = ModelRequest(messages=REQUEST.messages, tools=(TOOL,))

    with pytest.raises(NoEndpointAvailable, match="native tool calls"):
        router.complete(with_tools, tier="small", sensitivity="internal")


def test_request_builder_shapes_the_request_per_endpoint(clock):
    factory = StubFactory(native=[ProviderUnavailable("down")])
    router = ModelRouter(
        [stub("native"), stub("json", supports_tools=False, supports_json_schema=True)],
        factory,
        clock,
    )
    schema = {"type": "object"}

    def build(endpoint: EndpointConfig) -> ModelRequest:
        if endpoint.supports_tools:
            return ModelRequest(messages=REQUEST.messages, tools=(TOOL,))
        return ModelRequest(messages=REQUEST.messages, response_schema=schema)

    response = router.complete(build, tier="small", sensitivity="internal")

    assert response.endpoint == "json"
    assert factory.providers["native"].calls[0].tools == (TOOL,)
    assert factory.providers["json"].calls[0].response_schema == schema


def test_allowed_restricts_endpoints_by_name(clock):
    factory = StubFactory()
    router = ModelRouter([stub("a"), stub("b")], factory, clock)

    response = router.complete(REQUEST, tier="small", sensitivity="internal", allowed={"b"})
    assert response.endpoint == "b"
    with pytest.raises(NoEndpointAvailable):
        router.complete(REQUEST, tier="small", sensitivity="internal", allowed={"gone"})


def test_malformed_output_is_raised_without_failover_and_names_the_endpoint(clock):
    malformed = MalformedOutput(
        "bad args", response=ModelResponse(raw_text="{oops", usage=Usage(5, 3))
    )
    factory = StubFactory(a=[malformed])
    router = ModelRouter([stub("a"), stub("b")], factory, clock, fail_max=1)

    with pytest.raises(MalformedOutput) as caught:
        router.complete(REQUEST, tier="small", sensitivity="internal")

    assert caught.value.response.endpoint == "a"
    assert caught.value.response.usage == Usage(5, 3)
    assert factory.calls("b") == 0
    assert router.breaker_state("a") == "closed"


def test_escalation_goes_up_to_large():
    assert escalate("small") == "large"
    assert escalate("large") == "large"
    assert ModelRouter.escalate("small") == "large"


def test_cost_uses_per_million_token_prices(clock):
    priced = stub(
        "priced", price_input_per_mtok=Decimal("3.00"), price_output_per_mtok=Decimal("15")
    )
    router = ModelRouter([priced], StubFactory(), clock)

    cost = router.cost("priced", Usage(input_tokens=2_000, output_tokens=1_000))

    assert cost == Decimal("0.021")


def test_duplicate_endpoint_names_are_rejected(clock):
    with pytest.raises(ValueError, match="duplicate"):
        ModelRouter([stub("a"), stub("a")], StubFactory(), clock)


# -- prices, context windows, candidates ------------------------------------------------

UNPRICED = "has no price: set both prices or mark it free"


def test_an_unpriced_endpoint_is_never_called_not_even_to_fail_over(clock):
    factory = StubFactory(priced=[None, ProviderUnavailable("down")])
    router = ModelRouter([stub("unpriced", refused=UNPRICED), stub("priced")], factory, clock)

    assert router.complete(REQUEST, tier="small", sensitivity="internal").endpoint == "priced"
    with pytest.raises(AllEndpointsFailed) as caught:
        router.complete(REQUEST, tier="small", sensitivity="internal")

    assert [a.endpoint for a in caught.value.attempts] == ["priced"]
    assert factory.calls("unpriced") == 0


def test_when_price_is_the_only_reason_the_error_says_endpoint_unpriced(clock):
    factory = StubFactory()
    router = ModelRouter(
        [stub("gpt", refused=UNPRICED), stub("claude", tier="large", refused=UNPRICED)],
        factory,
        clock,
    )

    with pytest.raises(EndpointUnpriced) as caught:
        router.complete(REQUEST, tier="small", sensitivity="internal")

    error = caught.value
    assert isinstance(error, NoEndpointAvailable) and not error.retryable
    assert error.code == "endpoint_unpriced"
    assert f"endpoint 'gpt' {UNPRICED}" in str(error)
    assert f"endpoint 'claude' {UNPRICED}" in str(error)
    assert factory.calls("gpt") == factory.calls("claude") == 0


@pytest.mark.parametrize(
    ("request_", "sensitivity", "why"),
    [
        (ModelRequest(messages=REQUEST.messages, tools=(TOOL,)), "internal", "native tool calls"),
        (REQUEST, "confidential", "'confidential'"),
    ],
)
def test_price_is_not_blamed_when_another_rule_leaves_nothing(clock, request_, sensitivity, why):
    router = ModelRouter(
        [
            stub("priced-json", supports_tools=False),
            stub("unpriced-json", refused=UNPRICED, supports_tools=False),
        ],
        StubFactory(),
        clock,
    )

    with pytest.raises(NoEndpointAvailable) as caught:
        router.complete(request_, tier="small", sensitivity=sensitivity)

    assert not isinstance(caught.value, EndpointUnpriced)
    assert why in str(caught.value)


def test_a_priced_endpoint_down_is_not_reported_as_a_missing_price(clock):
    factory = StubFactory(priced=[ProviderUnavailable("down")])
    router = ModelRouter(
        [stub("priced"), stub("unpriced", refused=UNPRICED)], factory, clock, fail_max=1
    )
    with pytest.raises(AllEndpointsFailed):
        router.complete(REQUEST, tier="small", sensitivity="internal")

    error = router.no_endpoint_error(REQUEST, tier="small", sensitivity="internal")
    assert type(error) is NoEndpointAvailable
    assert "open circuit breaker (priced)" in str(error)


def test_no_endpoint_error_is_what_complete_would_raise_before_trying(clock):
    router = ModelRouter(
        [stub("a"), stub("b", tier="large", refused=UNPRICED)], StubFactory(), clock
    )

    assert router.no_endpoint_error(REQUEST, tier="small", sensitivity="internal") is None
    unpriced = router.no_endpoint_error(REQUEST, tier="large", sensitivity="internal")
    assert isinstance(unpriced, EndpointUnpriced)
    with pytest.raises(EndpointUnpriced, match=str(unpriced)):
        router.complete(REQUEST, tier="large", sensitivity="internal")


def test_candidates_are_what_complete_may_try_in_order_breakers_aside(clock):
    factory = StubFactory(cheap=[ProviderUnavailable("down")])
    router = ModelRouter(
        [
            stub("big", tier="large", price_output_per_mtok=Decimal("15")),
            stub("cheap", price_output_per_mtok=Decimal("0.6")),
            stub("unpriced", refused=UNPRICED),
            stub("json-only", supports_tools=False),
            stub("other", allowed_sensitivities={"public"}),
        ],
        factory,
        clock,
        fail_max=1,
    )
    with_tools = ModelRequest(messages=REQUEST.messages, tools=(TOOL,))

    def candidates() -> list[str]:
        listed = router.candidates(with_tools, tier="small", sensitivity="internal")
        return [endpoint.name for endpoint in listed]

    assert candidates() == ["cheap", "big"]
    # cheap fails and its breaker opens: big answers, and cheap is still a candidate, since
    # its breaker may let a trial call through by the time a held request goes.
    assert router.complete(with_tools, tier="small", sensitivity="internal").endpoint == "big"
    assert router.breaker_state("cheap") == "open"
    assert candidates() == ["cheap", "big"]
    clock.advance(DEFAULT_RESET_TIMEOUT_S + 1)
    assert router.complete(with_tools, tier="small", sensitivity="internal").endpoint == "cheap"
    # Nothing eligible: an empty list, not an error.
    assert router.candidates(REQUEST, tier="large", sensitivity="confidential") == []


def test_min_context_skips_endpoints_with_a_smaller_window(clock):
    factory = StubFactory()
    router = ModelRouter(
        [stub("short", context_window=4096), stub("long", tier="large", context_window=32768)],
        factory,
        clock,
    )
    ask = {"tier": "small", "sensitivity": "internal"}

    assert router.complete(REQUEST, **ask).endpoint == "short"
    assert router.complete(REQUEST, **ask, min_context=8000).endpoint == "long"
    assert [e.name for e in router.candidates(REQUEST, **ask, min_context=8000)] == ["long"]
    first = router.first_choice(**ask, min_context=8000)
    assert first is not None and first.name == "long"
    assert router.first_choice(**ask, min_context=40000) is None
    with pytest.raises(NoEndpointAvailable, match="40,000 tokens of context"):
        router.complete(REQUEST, **ask, min_context=40000)
    assert factory.calls("short") == 1 and factory.calls("long") == 1
