"""Tell open streams at once when the principal behind them changes.

Only a nudge: the stream re-validates its principal itself (principals.identity_current),
so a missed or spurious message is harmless. Expiry needs no signal; the streams'
periodic re-validation catches it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save

from apps.tenants.models import ApiKey, Membership, Tenant
from apps.tenants.principals import (
    key_group,
    principal_changed_publish,
    tenant_principals_group,
    user_group,
)


def _key_changed(sender: Any, instance: ApiKey, **kwargs: Any) -> None:
    principal_changed_publish(key_group(instance.pk))


def _membership_changed(sender: Any, instance: Membership, **kwargs: Any) -> None:
    principal_changed_publish(user_group(instance.user_id))


def _user_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    principal_changed_publish(user_group(instance.pk))


def _tenant_changed(sender: Any, instance: Tenant, **kwargs: Any) -> None:
    principal_changed_publish(tenant_principals_group(instance.pk))


def connect() -> None:
    user_model = get_user_model()
    for signal in (post_save, post_delete):
        signal.connect(_key_changed, sender=ApiKey, dispatch_uid="warden.principal.key")
        signal.connect(
            _membership_changed, sender=Membership, dispatch_uid="warden.principal.membership"
        )
        signal.connect(_user_changed, sender=user_model, dispatch_uid="warden.principal.user")
        signal.connect(_tenant_changed, sender=Tenant, dispatch_uid="warden.principal.tenant")
