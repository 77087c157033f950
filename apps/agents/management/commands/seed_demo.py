"""Create the demo tenant, its admin and its agents, idempotently (safe on every `make run`).

It lives with the demo agents: seeding needs tenants and agents, so only the agents app can
own it without a lower layer importing a higher one."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.agents.demo import seed_demo_agents, seed_demo_policies
from apps.tenants import services
from apps.tenants.models import Membership, Role, Tenant

DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = (
        "Seed the demo tenant with an admin user "
        "(password from WARDEN_ADMIN_PASSWORD, or generated once)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        username = settings.WARDEN_ADMIN_USERNAME
        password_file = settings.VAR_DIR / "admin-password"
        user_model = get_user_model()
        with transaction.atomic():
            user = user_model.objects.filter(username=username).first()
            if user is None:
                password = settings.WARDEN_ADMIN_PASSWORD or secrets.token_urlsafe(12)
                user = user_model.objects.create_superuser(
                    username=username, email=settings.WARDEN_ADMIN_EMAIL, password=password
                )
                if not settings.WARDEN_ADMIN_PASSWORD:
                    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
                    password_file.write_text(password)
                    password_file.chmod(0o600)
            elif settings.WARDEN_ADMIN_PASSWORD and not user.check_password(
                settings.WARDEN_ADMIN_PASSWORD
            ):
                user.set_password(settings.WARDEN_ADMIN_PASSWORD)
                user.save(update_fields=["password"])
            tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
            if tenant is None:
                tenant = services.tenant_create(name="Demo", slug=DEMO_SLUG, owner=user)
            elif not Membership.objects.filter(tenant=tenant, user=user).exists():
                services.membership_add(tenant=tenant, user=user, role=Role.OWNER)
            seed_demo_agents(tenant=tenant)
            seed_demo_policies(tenant=tenant)
        if settings.WARDEN_ADMIN_PASSWORD:
            shown = "(from WARDEN_ADMIN_PASSWORD)"
        elif password_file.exists():
            shown = password_file.read_text().strip()
        else:
            shown = "(unchanged; set WARDEN_ADMIN_PASSWORD to reset it)"
        self.stdout.write(f"demo tenant: {tenant.slug}  admin login: {username} / {shown}")
