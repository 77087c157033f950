"""The OpenAPI schema as `/api/v1/schema/` serves it, built in this process."""

from __future__ import annotations

import json
from typing import Any

from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer


def served_schema() -> dict[str, Any]:
    """Same generator and settings as SpectacularAPIView; JSON round-tripped like its answer."""
    raw = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(raw, renderer_context={}))
