"""Django REST framework and OpenAPI."""

from __future__ import annotations

from config.env import env_int

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.tenants.authentication.ApiKeyAuthentication",
        "apps.tenants.authentication.OidcJwtAuthentication",
        "apps.tenants.authentication.TenantSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.tenants.permissions.IsTenantMember"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.api.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.pagination.Pagination",
    "PAGE_SIZE": env_int("WARDEN_API_PAGE_SIZE", 50),
    "DEFAULT_SCHEMA_CLASS": "apps.core.api.schema.WardenAutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api.errors.exception_handler",
    # Rates live in access.py (WARDEN_API_RATE_*), read per request. One class counts both
    # the address and the principal window, in one Redis round trip.
    "DEFAULT_THROTTLE_CLASSES": ["apps.tenants.throttling.ApiRateThrottle"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

# Request JSON nested deeper than this is refused (400 json_too_deep) before it is decoded.
# Capped at 256: storing or rendering deeper values would reach Python's recursion limit.
WARDEN_MAX_JSON_DEPTH = min(env_int("WARDEN_MAX_JSON_DEPTH", 64), 256)

SPECTACULAR_SETTINGS = {
    "TITLE": "Warden API",
    "DESCRIPTION": "Governance platform for production LLM agents.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    # The enum hook is drf-spectacular's default; the SSE view is a plain Django view that
    # spectacular can't see, so a hook writes its operation.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.agents.api.schema.add_session_events",
    ],
    "ENUM_NAME_OVERRIDES": {
        "SensitivityEnum": "apps.llm.models.Sensitivity",
        "TierEnum": "apps.llm.models.Tier",
    },
}
