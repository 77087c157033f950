"""Model endpoints a tenant's agents may be routed to."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.tenants.models import TenantOwned


class ProviderKind(models.TextChoices):
    OPENAI = "openai", "OpenAI-compatible (OpenAI, vLLM, Ollama, llama.cpp)"
    ANTHROPIC = "anthropic", "Anthropic"
    LOCAL = "local", "Embedded local model (llama.cpp)"
    SCRIPTED = "scripted", "Scripted (deterministic, for tests and demos)"


class Tier(models.TextChoices):
    SMALL = "small", "Small"
    LARGE = "large", "Large"


class Sensitivity(models.TextChoices):
    PUBLIC = "public", "Public"
    INTERNAL = "internal", "Internal"
    CONFIDENTIAL = "confidential", "Confidential"


class EndpointState(models.TextChoices):
    """Whether an endpoint can take requests now. Remote endpoints are `ready` (their health
    is the circuit breaker's business); the embedded local model moves through the others."""

    READY = "ready", "Ready"
    BUILDING = "building", "Building (compiling llama.cpp / installing the model)"
    STARTING = "starting", "Starting (loading the model)"
    FAILED = "failed", "Failed"
    OFF = "off", "Off"


def default_sensitivities() -> list[str]:
    return [Sensitivity.PUBLIC, Sensitivity.INTERNAL]


# Prices are per million tokens, in the tenant's currency. Zero is not a price: an endpoint
# that costs nothing is marked `is_free`, so "free" and "nobody set a price" never look alike.
# The ceiling (under 100,000: five digits before the point) only catches nonsense, a stray
# digit or a price per token typed as per million; it leaves room for currencies with small
# units (the dearest model listed today costs 600 USD, some 90,000 JPY). Both bounds are what
# a price written with 4 places and 5 whole digits can say, so the API's schema states them.
PRICE_WHOLE_DIGITS, PRICE_PLACES = 5, 4
MIN_PRICE_PER_MTOK = Decimal("0.0001")
MAX_PRICE_PER_MTOK = Decimal("99999.9999")
UNPRICED_REASON = "has no price: set both prices or mark it free"
_PRICE_VALIDATORS = [MinValueValidator(MIN_PRICE_PER_MTOK), MaxValueValidator(MAX_PRICE_PER_MTOK)]


# What operators may set on an endpoint (the API key is separate: it is write-only).
ENDPOINT_EDITABLE_FIELDS: tuple[str, ...] = (
    "name",
    "provider",
    "model",
    "base_url",
    "tier",
    "context_window",
    "supports_tools",
    "supports_json_schema",
    "allowed_sensitivities",
    "price_input_per_mtok",
    "price_output_per_mtok",
    "is_free",
    "timeout_s",
    "priority",
    "options",
    "is_active",
)


class ModelEndpoint(TenantOwned):
    """One model behind one provider, with what the router needs to choose it.

    The API key is stored encrypted (Fernet) and never leaves the worker that
    calls the provider: not in API responses, events, logs or prompts.
    `state` says whether it can take requests now: the embedded local model's endpoint
    is `building` while llama.cpp compiles, `starting` while the model loads, then `ready`
    (or `failed`, with the reason in `state_detail`).
    Every call is priced: an endpoint has both prices, or is marked `is_free` and has none.
    One with neither is kept but never called (`unpriced`), so no call escapes a money budget.
    """

    name = models.SlugField(max_length=100)
    provider = models.CharField(max_length=16, choices=ProviderKind.choices)
    model = models.CharField(max_length=200, help_text="Model name as the provider knows it.")
    base_url = models.URLField(blank=True, help_text="Empty for the provider's default.")
    api_key_encrypted = models.TextField(blank=True, editable=False)
    tier = models.CharField(max_length=8, choices=Tier.choices, default=Tier.SMALL)
    context_window = models.PositiveIntegerField(default=8192)
    supports_tools = models.BooleanField(default=True, help_text="Native tool calling.")
    supports_json_schema = models.BooleanField(
        default=False, help_text="Can constrain output to a JSON Schema."
    )
    allowed_sensitivities = models.JSONField(
        default=default_sensitivities,
        help_text='Data sensitivities this endpoint may see, e.g. ["public", "internal"].',
    )
    price_input_per_mtok = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        null=True,
        blank=True,
        validators=_PRICE_VALIDATORS,
        help_text="Per million input tokens, in the tenant's currency.",
    )
    price_output_per_mtok = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        null=True,
        blank=True,
        validators=_PRICE_VALIDATORS,
        help_text="Per million output tokens, in the tenant's currency.",
    )
    is_free = models.BooleanField(
        default=False,
        help_text="Calls cost nothing (a scripted or local model): no price is set. An endpoint "
        "with neither both prices nor this mark is never called.",
    )
    timeout_s = models.FloatField(default=60.0)
    priority = models.IntegerField(default=100, help_text="Lower is tried first within a tier.")
    options = models.JSONField(
        default=dict, blank=True, help_text='Provider options, e.g. {"script": [...]}.'
    )
    is_active = models.BooleanField(default=True)
    # Set by the platform (the local model's supervisor), never by operators: a request
    # to an endpoint that is not ready fails at once with `endpoint_not_ready`.
    state = models.CharField(
        max_length=16, choices=EndpointState.choices, default=EndpointState.READY, editable=False
    )
    state_detail = models.TextField(
        blank=True, editable=False, help_text="Why the endpoint is in its state, for humans."
    )
    state_changed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["priority", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="uniq_endpoint_tenant_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider}:{self.model})"

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_encrypted)

    @property
    def is_ready(self) -> bool:
        return self.state == EndpointState.READY

    @property
    def unpriced(self) -> bool:
        """Neither free nor priced: the router refuses to call it."""
        if self.is_free:
            return False
        return self.price_input_per_mtok is None or self.price_output_per_mtok is None
