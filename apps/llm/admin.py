from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from apps.core.exceptions import WardenError
from apps.llm import services
from apps.llm.models import ENDPOINT_EDITABLE_FIELDS, ModelEndpoint
from apps.tenants.admin_scoping import TenantScopedAdmin


class EndpointForm(forms.ModelForm):
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the current key.",
    )
    clear_api_key = forms.BooleanField(required=False)

    class Meta:
        model = ModelEndpoint
        fields = ["tenant", *ENDPOINT_EDITABLE_FIELDS]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        problem = services.endpoint_price_problem(
            is_free=bool(cleaned.get("is_free")),
            price_input=cleaned.get("price_input_per_mtok"),
            price_output=cleaned.get("price_output_per_mtok"),
        )
        if problem:
            raise forms.ValidationError(problem, code="invalid_endpoint")
        return cleaned


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(TenantScopedAdmin):
    form = EndpointForm
    list_display = [
        "name",
        "tenant",
        "provider",
        "model",
        "tier",
        "priority",
        "is_active",
        "state",
        "price",
        "has_api_key",
    ]
    list_filter = ["tenant", "provider", "tier", "is_active", "state", "is_free"]
    readonly_fields = ["state", "state_detail", "state_changed_at"]
    search_fields = ["name", "model"]

    @admin.display(boolean=True, description="API key")
    def has_api_key(self, obj: ModelEndpoint) -> bool:
        return obj.has_api_key

    @admin.display(description="Price in / out per 1M tokens")
    def price(self, obj: ModelEndpoint) -> str:
        if obj.is_free:
            return "free"
        if obj.unpriced:
            return "no price: never called"
        return f"{obj.price_input_per_mtok} / {obj.price_output_per_mtok}"

    def save_model(self, request: HttpRequest, obj: ModelEndpoint, form: Any, change: bool) -> None:
        api_key = form.cleaned_data.get("api_key") or None
        if form.cleaned_data.get("clear_api_key"):
            api_key = ""
        fields = {name: getattr(obj, name) for name in services._EDITABLE}
        if not change and not obj.is_free:
            # An unticked box is "not said": a new scripted or local endpoint without
            # prices is then free, as over REST.
            del fields["is_free"]
        try:
            services.endpoint_save(tenant=obj.tenant, endpoint=obj, api_key=api_key, **fields)
        except WardenError as exc:
            messages.error(request, exc.message)
