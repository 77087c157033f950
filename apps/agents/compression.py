"""Context compression's glue: a turn's earlier history (the newest summary and the turns
after it) from the database, the token counter and window of the model it will most likely
use, and the store that keeps the summaries it makes. The mechanism is the runtime's
(apps/agents/runtime/compression.py)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import IntegrityError, transaction

from apps.agents.models import SessionSummary, Turn, TurnStatus
from apps.agents.runtime.compression import ContextMemory
from apps.agents.runtime.ports import ContextSummary, Exchange
from apps.llm.router import ModelRouter
from apps.llm.tokens import counter_for
from apps.llm.types import ModelRequest

DEFAULT_CONTEXT_WINDOW = 8192


class DbSummaryStore:
    """Keeps a turn's summary as a `SessionSummary` row of its session."""

    def __init__(self, turn: Turn) -> None:
        self.turn = turn

    def save(self, summary: ContextSummary) -> None:
        try:
            with transaction.atomic():
                SessionSummary.objects.create(
                    tenant_id=self.turn.tenant_id,
                    session_id=self.turn.session_id,
                    turn=self.turn,
                    from_seq=summary.from_seq,
                    through_seq=summary.through_seq,
                    text=summary.text,
                    tokens_before=summary.tokens_before,
                    tokens_after=summary.tokens_after,
                    counter=summary.counter[:32],
                    turn_ids=list(summary.turn_ids),
                )
        except IntegrityError:
            # A resumed run of the same turn got here again: the summary it made is kept.
            pass


def latest_summary(
    *, tenant_id: uuid.UUID, session_id: uuid.UUID, before_seq: int
) -> ContextSummary | None:
    """The session's newest summary of turns before `before_seq` that a turn up to
    `before_seq` made (tenant-scoped): what that turn ran with, even when replayed after
    later turns summarised again."""
    row = (
        SessionSummary.objects.filter(
            tenant_id=tenant_id,
            session_id=session_id,
            through_seq__lt=before_seq,
            turn__seq__lte=before_seq,
        )
        .order_by("-through_seq")
        .first()
    )
    if row is None:
        return None
    return ContextSummary(
        from_seq=row.from_seq,
        through_seq=row.through_seq,
        text=row.text,
        tokens_before=row.tokens_before,
        tokens_after=row.tokens_after,
        made_by=str(row.turn_id),
        counter=row.counter,
        turn_ids=tuple(str(t) for t in row.turn_ids),
    )


def _history(turn: Turn) -> tuple[ContextSummary | None, tuple[Exchange, ...]]:
    """The newest summary of turns before `turn` and the completed turns after it."""
    first_turn = turn.seq == 1  # no history: no query
    summary = (
        None
        if first_turn
        else latest_summary(
            tenant_id=turn.tenant_id, session_id=turn.session_id, before_seq=turn.seq
        )
    )
    after = summary.through_seq if summary is not None else 0
    earlier = (
        ()
        if first_turn
        else tuple(
            Exchange(seq=seq, turn_id=str(turn_id), user=user, answer=answer)
            for seq, turn_id, user, answer in Turn.objects.filter(
                tenant_id=turn.tenant_id,
                session_id=turn.session_id,
                seq__gt=after,
                seq__lt=turn.seq,
                status=TurnStatus.COMPLETED,
            )
            .order_by("seq")
            .values_list("seq", "id", "user_message", "final_answer")
        )
    )
    return summary, earlier


class _KeptSummaries:
    """Replay's summary store: nothing is written (a replay makes no summary)."""

    def save(self, summary: ContextSummary) -> None:
        return None


def replay_memory(turn: Turn) -> ContextMemory:
    """The history a recorded turn ran with, for replay: as a resumed run sees it — the
    summary the turn kept (if it made one) and the turns after it — with compression off, so
    replay makes no summary call of its own. A summary call that failed in the recorded run
    left its turns out of the prompt; replay shows that as the model input differing."""
    summary, earlier = _history(turn)
    return ContextMemory(
        exchanges=earlier,
        summary=summary,
        store=_KeptSummaries(),
        counter=counter_for(None),
        context_window=DEFAULT_CONTEXT_WINDOW,
        input_budget=turn.session.agent.max_input_tokens_per_turn,
        trigger=float("inf"),
    )


def context_memory(
    *, turn: Turn, router: ModelRouter, allowed: list[str] | None, tier: str, sensitivity: str
) -> ContextMemory:
    """The turn's history as the loop keeps it within limits: the newest summary, the
    completed turns after it, and the limits of the endpoint the router would try first."""
    summary, earlier = _history(turn)
    # The endpoint the router tries first, by its rules alone (no breaker read: a turn that
    # fails over to another endpoint is measured against the first one's window).
    candidates = router.candidates(
        ModelRequest(messages=()),
        tier=tier,  # type: ignore[arg-type]
        sensitivity=sensitivity,
        allowed=allowed,
        min_context=turn.min_context_tokens,
    )
    endpoint = candidates[0] if candidates else None
    enabled = bool(settings.WARDEN_CONTEXT_COMPRESSION)
    return ContextMemory(
        exchanges=earlier,
        summary=summary,
        store=DbSummaryStore(turn),
        counter=counter_for(endpoint),
        context_window=endpoint.context_window if endpoint else DEFAULT_CONTEXT_WINDOW,
        input_budget=turn.session.agent.max_input_tokens_per_turn,
        # Off: summaries made before are still shown, none is made.
        trigger=float(settings.WARDEN_CONTEXT_COMPRESSION_TRIGGER) if enabled else float("inf"),
        keep_recent=max(0, int(settings.WARDEN_CONTEXT_KEEP_TURNS)),
        summary_max_tokens=max(32, int(settings.WARDEN_CONTEXT_SUMMARY_TOKENS)),
    )
