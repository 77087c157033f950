"""Probes, metrics and JSON error pages (plain Django views: no auth, no DRF)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from apps.core import health
from apps.core.client_ip import client_ip, is_loopback
from apps.core.context import current_request_id


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Deliberately checks nothing else."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: what this web process needs to serve a request — the database and Redis.

    Deliberately not the Celery workers: a web process without a worker still takes turns
    (they wait queued, and the 202 says so), and a readiness probe that broadcasts a ping to
    every worker from every web replica would take web out of the load balancer whenever
    the workers are busy, restarting or scaled to their minimum. Workers have their own
    liveness probe (`python -m config.heartbeat worker`).
    """
    checks = {
        "database": health.check_database(),
        "redis": health.check_redis(),
    }
    ready = all(c.ok for c in checks.values())
    body = {
        "status": "ok" if ready else "fail",
        "failed": [name for name, c in checks.items() if not c.ok],
        "checks": {name: vars(c) for name, c in checks.items()},
    }
    if ready:
        detail = health.readiness_details()
        if detail:
            body["detail"] = detail
    return JsonResponse(body, status=200 if ready else 503)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text. Metrics name tenants, models and tools, so they are not public:
    `Authorization: Bearer <WARDEN_METRICS_TOKEN>` when a token is set; otherwise loopback
    clients only, and only where WARDEN_METRICS_ALLOW_LOOPBACK holds (not in prod)."""
    token = settings.WARDEN_METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            response = JsonResponse(
                {"code": "metrics_token_required", "message": "A valid metrics token is needed."},
                status=401,
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    elif not (settings.WARDEN_METRICS_ALLOW_LOOPBACK and is_loopback(client_ip(request))):
        return JsonResponse(
            {
                "code": "metrics_forbidden",
                "message": "Set WARDEN_METRICS_TOKEN to scrape /metrics from here.",
            },
            status=403,
        )
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)


def api_not_found(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {"code": "not_found", "message": f"No route for {request.path}."}, status=404
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return api_not_found(request)
    return defaults.page_not_found(request, exception or Exception())


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "bad_request", "message": "Bad request."}, status=400)
    return defaults.bad_request(request, exception or Exception())


def server_error(request: HttpRequest) -> HttpResponse:
    """The last resort: the request id to quote, and nothing about what failed."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {
                "code": "internal_error",
                "message": f"Internal error (request id {current_request_id()}).",
            },
            status=500,
        )
    return defaults.server_error(request)
