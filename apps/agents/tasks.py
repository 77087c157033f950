"""Celery tasks: thin wrappers that own only delivery behaviour."""

from __future__ import annotations

from celery import shared_task

from apps.agents import orchestrator


@shared_task(
    name="agents.run_turn",
    acks_late=True,
    reject_on_worker_lost=True,  # a killed worker's turn is redelivered and resumed
    ignore_result=True,
)
def run_turn(turn_id: str) -> str:
    return orchestrator.turn_execute(turn_id=turn_id)


@shared_task(name="agents.recover_turns", ignore_result=True)
def recover_turns() -> int:
    return orchestrator.turns_recover()
