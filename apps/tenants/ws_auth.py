"""Websocket authentication: console session cookie or API key, resolved to an Identity.

Browsers can't set headers on a websocket, so an API key may also come as the
`api_key` query parameter; non-browser clients should prefer the
`Authorization: Bearer` header. The tenant of a session user comes from the
`tenant` query parameter or their first membership.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from rest_framework.exceptions import Throttled

from apps.core.client_ip import client_ip_from_scope
from apps.tenants.authentication import identity_for_api_key, identity_for_user
from apps.tenants.exceptions import AuthError
from apps.tenants.throttling import address_auth_failure_record, address_auth_failures_check


@database_sync_to_async
def _resolve(scope: dict[str, Any]) -> tuple[Any, str | None]:
    headers = dict(scope.get("headers") or [])
    query = parse_qs((scope.get("query_string") or b"").decode())
    auth = headers.get(b"authorization", b"").decode()
    raw_key = None
    if auth.lower().startswith("bearer "):
        raw_key = auth[7:].strip()
    elif query.get("api_key"):
        raw_key = query["api_key"][0]
    if raw_key:
        # The same per-address budget of failed authentications as the REST API: an address
        # that keeps guessing keys is refused before any lookup, on every channel.
        address = client_ip_from_scope(scope)
        try:
            address_auth_failures_check(address)
        except Throttled:
            return None, "throttled"
        try:
            _, identity = identity_for_api_key(raw_key)
            return identity, None
        except AuthError as exc:
            address_auth_failure_record(address)
            return None, exc.code
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        slug = (query.get("tenant") or [None])[0]
        session_identity = identity_for_user(user, slug)
        return session_identity, None if session_identity else "no_tenant"
    return None, "not_authenticated"


class IdentityMiddleware(BaseMiddleware):
    """Puts `identity` (or None) and `auth_error` into the websocket scope."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        identity, error = await _resolve(scope)
        scope = {**scope, "identity": identity, "auth_error": error}
        return await super().__call__(scope, receive, send)


def TenantAuthMiddlewareStack(inner: Any) -> Any:
    return AuthMiddlewareStack(IdentityMiddleware(inner))
