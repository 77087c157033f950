"""Writes for model endpoints, and the per-process router built from them."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core import crypto
from apps.core.breakers import CircuitBreakers
from apps.core.breakers.adapters import breaker_store
from apps.core.egress.adapters import platform_egress_policy
from apps.core.exceptions import Conflict
from apps.llm.exceptions import EndpointInvalid
from apps.llm.models import (
    ENDPOINT_EDITABLE_FIELDS,
    MAX_PRICE_PER_MTOK,
    MIN_PRICE_PER_MTOK,
    UNPRICED_REASON,
    EndpointState,
    ModelEndpoint,
    ProviderKind,
    Sensitivity,
)
from apps.llm.providers.base import EndpointConfig
from apps.llm.router import ModelRouter
from apps.tenants.models import Tenant

_EDITABLE = frozenset(ENDPOINT_EDITABLE_FIELDS)
_PRICES = ("price_input_per_mtok", "price_output_per_mtok")
# Models that run on the platform's own hosts, or nowhere: a new one without prices is free.
FREE_BY_DEFAULT = frozenset({ProviderKind.SCRIPTED, ProviderKind.LOCAL})
logger = logging.getLogger("warden.llm")


def endpoint_price_problem(
    *, is_free: bool, price_input: Decimal | None, price_output: Decimal | None
) -> str:
    """Why these prices can't be saved ("" if they can): a price out of bounds, or a
    price on an endpoint marked free. Shared by the service and the console's form."""
    for name, price in zip(_PRICES, (price_input, price_output), strict=True):
        if price is not None and not MIN_PRICE_PER_MTOK <= price <= MAX_PRICE_PER_MTOK:
            return (
                f"{name} must be between {MIN_PRICE_PER_MTOK} and {MAX_PRICE_PER_MTOK:,} "
                "per million tokens; an endpoint that costs nothing is marked free instead."
            )
    if is_free and (price_input is not None or price_output is not None):
        return (
            "A free endpoint has no price: clear price_input_per_mtok and "
            "price_output_per_mtok, or set is_free to false."
        )
    return ""


def _validate(endpoint: ModelEndpoint) -> None:
    unknown = set(endpoint.allowed_sensitivities or []) - set(Sensitivity.values)
    if not isinstance(endpoint.allowed_sensitivities, list) or unknown:
        raise EndpointInvalid(
            f"allowed_sensitivities must be a list of {', '.join(Sensitivity.values)}."
        )
    if endpoint.timeout_s <= 0:
        raise EndpointInvalid("timeout_s must be positive.")
    problem = endpoint_price_problem(
        is_free=endpoint.is_free,
        price_input=endpoint.price_input_per_mtok,
        price_output=endpoint.price_output_per_mtok,
    )
    if problem:
        raise EndpointInvalid(problem)
    if endpoint.provider == "scripted" and "script" in (endpoint.options or {}):
        from apps.llm.providers.scripted import validate_script

        try:
            validate_script(endpoint.options["script"])
        except ValueError as exc:
            raise EndpointInvalid(f"options.script: {exc}") from exc


def endpoint_save(
    *,
    tenant: Tenant,
    endpoint: ModelEndpoint | None = None,
    api_key: str | None = None,
    **fields: Any,
) -> ModelEndpoint:
    """Create (endpoint=None) or update an endpoint. `api_key` is encrypted; "" clears it.

    A new scripted or local endpoint given no prices and no `is_free` is free: neither
    costs anyone anything per token. Every other endpoint is priced, or marked free, or
    refused for calls (`endpoint_config`).
    """
    unknown = set(fields) - _EDITABLE
    if unknown:
        raise EndpointInvalid(f"Unknown endpoint fields: {', '.join(sorted(unknown))}.")
    if (
        (endpoint is None or endpoint._state.adding)  # a new row (the console builds its own)
        and fields.get("provider") in FREE_BY_DEFAULT
        and "is_free" not in fields
        and all(fields.get(name) is None for name in _PRICES)
    ):
        fields["is_free"] = True
    endpoint = endpoint or ModelEndpoint(tenant=tenant)
    for name, value in fields.items():
        setattr(endpoint, name, value)
    if api_key is not None:
        endpoint.api_key_encrypted = crypto.encrypt(api_key) if api_key else ""
    _validate(endpoint)
    try:
        with transaction.atomic():
            endpoint.save()
    except IntegrityError as exc:
        raise Conflict(f"An endpoint named {endpoint.name!r} exists.", code="name_taken") from exc
    return endpoint


def endpoint_config(endpoint: ModelEndpoint) -> EndpointConfig:
    """The router's view of a row; the only place the API key is decrypted. Its provider
    connects only where the platform's egress policy allows. An unpriced endpoint stays in
    the router, refused, so that a request it alone could serve fails saying so."""
    return EndpointConfig(
        name=endpoint.name,
        kind=endpoint.provider,  # type: ignore[arg-type]
        model=endpoint.model,
        base_url=endpoint.base_url,
        api_key=crypto.decrypt(endpoint.api_key_encrypted) if endpoint.api_key_encrypted else "",
        tier=endpoint.tier,  # type: ignore[arg-type]
        context_window=endpoint.context_window,
        supports_tools=endpoint.supports_tools,
        supports_json_schema=endpoint.supports_json_schema,
        allowed_sensitivities=frozenset(endpoint.allowed_sensitivities),
        price_input_per_mtok=endpoint.price_input_per_mtok or Decimal(0),
        price_output_per_mtok=endpoint.price_output_per_mtok or Decimal(0),
        timeout_s=endpoint.timeout_s,
        options=dict(endpoint.options or {}),
        egress=platform_egress_policy(),
        not_ready=_not_ready_reason(endpoint),
        is_free=endpoint.is_free,
        refused=UNPRICED_REASON if endpoint.unpriced else "",
    )


def endpoint_breaker_key(endpoint: ModelEndpoint) -> str:
    # By id: unique across tenants (two may both have an endpoint "gpt"), and the same for
    # every router of every process, so they all share the endpoint's breaker.
    return f"llm:{endpoint.id}"


def endpoint_breakers() -> CircuitBreakers:
    """The model endpoints' circuit breakers, shared by every worker (see apps.core.breakers)."""
    return CircuitBreakers(
        breaker_store(),
        fail_max=settings.WARDEN_BREAKER_FAIL_MAX,
        reset_timeout_s=settings.WARDEN_BREAKER_RESET_SECONDS,
    )


def _not_ready_reason(endpoint: ModelEndpoint) -> str:
    if endpoint.is_ready:
        return ""
    return f"{endpoint.state}: {endpoint.state_detail}" if endpoint.state_detail else endpoint.state


def endpoint_state_set(*, endpoint: ModelEndpoint, state: str, detail: str = "") -> ModelEndpoint:
    """Record whether `endpoint` can take requests now, and why. `updated_at` moves too, so
    every worker's cached router sees the change on its next turn."""
    if state not in EndpointState.values:
        raise EndpointInvalid(f"state must be one of {', '.join(EndpointState.values)}.")
    endpoint.state, endpoint.state_detail = state, detail
    endpoint.state_changed_at = timezone.now()
    endpoint.save(update_fields=["state", "state_detail", "state_changed_at", "updated_at"])
    logger.info(
        "model endpoint %s is %s%s",
        endpoint.name,
        state,
        f": {detail}" if detail else "",
        extra={"endpoint": endpoint.name, "tenant_id": str(endpoint.tenant_id), "state": state},
    )
    return endpoint


def local_endpoints_state_set(*, base_url: str, state: str, detail: str = "") -> int:
    """Set the state of every embedded-model endpoint served at `base_url` (the local model's
    supervisor knows its server, not which tenants point at it). Returns how many changed."""
    rows = ModelEndpoint.objects.filter(provider=ProviderKind.LOCAL, base_url=base_url)
    changed = 0
    for endpoint in rows:
        if (endpoint.state, endpoint.state_detail) != (state, detail):
            endpoint_state_set(endpoint=endpoint, state=state, detail=detail)
            changed += 1
    return changed


# Routers live as long as the worker process; their circuit breakers live in the shared
# breaker store (Redis), so they outlive a router too. A change to any endpoint of the
# tenant (updated_at) builds a fresh router.
_routers: dict[uuid.UUID, tuple[tuple[Any, ...], ModelRouter]] = {}
_routers_lock = threading.Lock()


def router_for_tenant(
    *, tenant_id: uuid.UUID, rows: Sequence[ModelEndpoint] | None = None
) -> ModelRouter:
    """The tenant's router. `rows`: its active endpoints by priority and name, as read here,
    when the caller already has them."""
    rows = list(
        rows
        if rows is not None
        else ModelEndpoint.objects.filter(tenant_id=tenant_id, is_active=True).order_by(
            "priority", "name"
        )
    )
    # Endpoints that can't take requests yet go last (the sort is stable): within a tier a
    # ready one answers first, and only an agent left with nothing else gets the clear
    # `endpoint_not_ready` error.
    rows.sort(key=lambda row: not row.is_ready)
    signature = tuple((row.id, row.updated_at) for row in rows)
    with _routers_lock:
        cached = _routers.get(tenant_id)
        if cached and cached[0] == signature:
            return cached[1]
        router = ModelRouter(
            [endpoint_config(row) for row in rows],
            breakers=endpoint_breakers(),
            breaker_keys={row.name: endpoint_breaker_key(row) for row in rows},
        )
        # The old router is dropped, not closed: another thread may still be
        # mid-call on it; its connection pools go with it when it is collected.
        _routers[tenant_id] = (signature, router)
        return router


def endpoint_delete(*, endpoint: ModelEndpoint) -> None:
    endpoint.delete()
