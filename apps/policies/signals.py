"""Every new tenant starts with the shipped default policy.

A signal because tenants sit below policies in the layers: the tenants app cannot call this
app's services, so this app listens for new tenants (in the transaction that creates them).
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save

from apps.policies import services
from apps.tenants.models import Tenant


def _tenant_created(
    sender: Any, instance: Tenant, created: bool, raw: bool = False, **_: Any
) -> None:
    if created and not raw:
        services.policy_default_ensure(tenant=instance)


def connect() -> None:
    post_save.connect(_tenant_created, sender=Tenant, dispatch_uid="warden.policies.default")
