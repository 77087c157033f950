"""Celery tasks: thin wrappers over services."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from apps.budgets.services.ledger import reservations_reconcile


@shared_task(name="budgets.reconcile", ignore_result=True)
def reconcile() -> int:
    """Beat, every 30 s: charge the holds of calls whose worker died before settling."""
    return reservations_reconcile(limit=int(settings.WARDEN_BUDGET_RECONCILE_BATCH))
