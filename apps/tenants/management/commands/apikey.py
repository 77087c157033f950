"""`python manage.py apikey …`: API keys for the operator's scripts.

    apikey create --tenant <slug> --scopes read,write [--expires 30d] [--name NAME]
    apikey list --tenant <slug>
    apikey revoke <prefix> --tenant <slug>

`create` prints the new key, and nothing else, on stdout — once; it is stored only as a hash
— so a script can capture it (`KEY=$(python manage.py apikey create …)`); what was created
goes to stderr. Input is checked as `POST /api/v1/api-keys` checks it (the same serializer
and service). Exit status 0 on success, 1 on failure (a message on stderr says why).
"""

from __future__ import annotations

import re
from argparse import ArgumentParser
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_duration

from apps.core.exceptions import WardenError
from apps.tenants import selectors, services
from apps.tenants.api.serializers import ApiKeyCreateSerializer
from apps.tenants.exceptions import TenantNotFound
from apps.tenants.models import ApiKey, ApiKeyScope, Tenant

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SHORT_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhdw])\s*$")
EXPIRES_HELP = "a duration: 30d, 12h, 90m, 2w, or ISO 8601 (P30D); default: never expires"


def parse_expires(value: str) -> timedelta:
    """`30d`, `12h`, `2w`, … or an ISO 8601 / Django duration (`P30D`, `1 00:00:00`)."""
    match = _SHORT_DURATION.match(value)
    duration = (
        timedelta(**{_UNITS[match[2]]: int(match[1])}) if match else parse_duration(value.strip())
    )
    if duration is None:
        raise CommandError(f"--expires {value!r} is not a duration ({EXPIRES_HELP}).")
    if duration <= timedelta(0):
        raise CommandError(f"--expires {value!r} must be longer than zero.")
    return duration


def _errors(detail: Any, field: str = "") -> list[str]:
    """A serializer's nested errors as `field: message` lines."""
    if isinstance(detail, dict):
        return [line for key, sub in detail.items() for line in _errors(sub, field or str(key))]
    if isinstance(detail, list):
        return [line for sub in detail for line in _errors(sub, field)]
    return [f"{field}: {detail}" if field else str(detail)]


class Command(BaseCommand):
    help = "Create, list and revoke a tenant's API keys."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        create = sub.add_parser("create", help="create a key; prints only the key on stdout")
        create.add_argument("--tenant", required=True, help="the tenant's slug")
        create.add_argument(
            "--scopes",
            required=True,
            help=f"comma-separated: {', '.join(ApiKeyScope.values)}",
        )
        create.add_argument("--expires", help=EXPIRES_HELP)
        create.add_argument("--name", help="a label for people (default: cli <date>)")
        listing = sub.add_parser("list", help="list the tenant's keys (never their secrets)")
        listing.add_argument("--tenant", required=True, help="the tenant's slug")
        revoke = sub.add_parser("revoke", help="revoke a key at once")
        revoke.add_argument("prefix", help="the key's prefix (as listed), or wdn_<prefix>")
        revoke.add_argument("--tenant", required=True, help="the tenant's slug")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = selectors.tenant_get_by_slug(slug=options["tenant"])
        except TenantNotFound as exc:
            raise CommandError(exc.message) from None
        try:
            if options["action"] == "create":
                self._create(tenant, options)
            elif options["action"] == "list":
                self._list(tenant)
            else:
                self._revoke(tenant, options["prefix"])
        except WardenError as exc:
            raise CommandError(f"{exc.message} [{exc.code}]") from None

    def _info(self, message: str) -> None:
        # Details for people on stderr, unstyled: stdout carries only what scripts capture.
        self.stderr.write(message, style_func=lambda text: text)

    def _create(self, tenant: Tenant, options: dict[str, Any]) -> None:
        expires_at: datetime | None = None
        if options.get("expires") and options["expires"].strip().lower() != "never":
            try:
                expires_at = timezone.now() + parse_expires(options["expires"])
            except OverflowError:
                raise CommandError(f"--expires {options['expires']!r} is too far away.") from None
        scopes = [scope.strip() for scope in options["scopes"].split(",") if scope.strip()]
        name = options.get("name") or f"cli {timezone.now():%Y-%m-%d}"
        data = ApiKeyCreateSerializer(
            # As a client would send it: the API's serializers take JSON types only.
            data={
                "name": name,
                "scopes": scopes,
                "expires_at": expires_at.isoformat() if expires_at else None,
            }
        )
        if not data.is_valid():
            raise CommandError("; ".join(_errors(data.errors)))
        key, raw = services.api_key_create(
            tenant=tenant,
            name=data.validated_data["name"],
            scopes=data.validated_data["scopes"],
            expires_at=data.validated_data.get("expires_at"),
        )
        self.stdout.write(raw)
        expiry = f"expires {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else "no expiry"
        self._info(
            f"created API key {key.prefix} ({key.name}) for tenant {tenant.slug}: "
            f"scopes {', '.join(key.scopes)}; {expiry}. It is shown only this once."
        )

    def _list(self, tenant: Tenant) -> None:
        keys = list(selectors.api_key_list(tenant=tenant))
        if not keys:
            self._info(f"no API keys in tenant {tenant.slug}")
            return
        width = max(len(k.name) for k in keys)
        for key in keys:
            expires = f"{key.expires_at:%Y-%m-%d %H:%M}" if key.expires_at else "never"
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            self.stdout.write(
                f"{key.prefix}  {key.name:<{width}}  {','.join(key.scopes):<16}  "
                f"{self._state(key):<7}  expires {expires}  last used {used}"
            )

    def _revoke(self, tenant: Tenant, given: str) -> None:
        # Accept what people paste: the listed prefix, `wdn_<prefix>` or the whole key.
        parts = given.strip().split("_")
        prefix = parts[1] if parts[0] == services.API_KEY_PREFIX and len(parts) > 1 else parts[0]
        try:
            key = selectors.api_key_get_by_prefix(tenant=tenant, prefix=prefix)
        except ApiKey.DoesNotExist:
            raise CommandError(f"No API key {prefix!r} in tenant {tenant.slug}.") from None
        if key.is_revoked:
            self._info(f"API key {key.prefix} ({key.name}) was already revoked")
            return
        services.api_key_revoke(key=key)
        self._info(f"revoked API key {key.prefix} ({key.name}) of tenant {tenant.slug}")

    @staticmethod
    def _state(key: ApiKey) -> str:
        if key.is_revoked:
            return "revoked"
        if key.is_expired:
            return "expired"
        return "active"
