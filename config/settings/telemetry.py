"""OpenTelemetry (apps/core/instrumentation.py, README "Traces and metrics")."""

from __future__ import annotations

from config.env import env_bool, env_str

# Where spans go, over OTLP/HTTP with protobuf (`<endpoint>/v1/traces`), e.g.
# http://otel-collector:4318. Empty: nothing is exported, and spans cost next to nothing
# (dropped by the sampler; their trace ids are still stored on events and steps). The
# exporter reads the other standard variables itself (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT...).
OTEL_EXPORTER_OTLP_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_ENDPOINT", "")
OTEL_SERVICE_NAME = env_str("OTEL_SERVICE_NAME", "warden")
# Off: no Django, Celery or psycopg spans (the loop's own spans and trace ids stay).
WARDEN_TELEMETRY = env_bool("WARDEN_TELEMETRY", True)

# The Redis hash (REDIS_URL) where every process adds its turn, step, token, cost and policy
# counts for /metrics (apps/agents/metrics.py).
WARDEN_METRICS_REDIS_PREFIX = env_str("WARDEN_METRICS_REDIS_PREFIX", "warden:metrics")
