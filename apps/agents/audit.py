"""The audit log: each session's events form a hash chain, sealed by the database.

The writer is the database (migration 0005_audit_chain): as a transaction commits, a trigger
gives each of its new events the next `chain_seq` of its session, the previous event's hash
(`prev_hash`, 64 zeros for the first) and its own `hash`, the SHA-256 of its canonical text.
This module is the reader, and deliberately does not trust the trigger: it recomputes every
hash from the stored row, in Python, and follows the links.

The canonical text (hashed as UTF-8) is ten lines joined by "\\n":

    warden-audit-v1
    <prev_hash>            64 lowercase hex digits; "0" * 64 for a session's first event
    <tenant id>            UUID, lowercase, with hyphens
    <session id>
    <chain_seq>            decimal, from 1, no gaps
    <event id>             decimal (the SSE event id)
    <turn id>              UUID, or the empty string
    <created_at>           UTC, YYYY-MM-DDTHH:MM:SS.ffffffZ
    <type>
    <payload>              the payload as PostgreSQL prints jsonb (`payload::text`)

Only `type` could hold a newline, and it sits between lines of fixed count: the text is
unambiguous. The payload is PostgreSQL's own rendering of the stored jsonb (deterministic:
keys shortest first then bytewise, one space after ":" and ","); the export ships that text
with each event, so an archiver recomputes `sha256(canonical)` without re-rendering JSON.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from django.db.models import F, QuerySet, TextField
from django.db.models.functions import Cast

from apps.agents.models import AgentSession, SessionChainHead, SessionEvent

VERSION = "warden-audit-v1"
GENESIS = "0" * 64

Problem = Literal["altered", "missing", "reordered", "unsealed"]


def canonical(
    *,
    prev_hash: str,
    tenant_id: uuid.UUID,
    session_id: uuid.UUID,
    seq: int,
    event_id: int,
    turn_id: uuid.UUID | None,
    created_at: datetime,
    type: str,
    payload_text: str,
) -> str:
    """The text an event's hash is the SHA-256 of (the module docstring has the format)."""
    created = created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return "\n".join(
        [
            VERSION,
            prev_hash,
            str(tenant_id),
            str(session_id),
            str(seq),
            str(event_id),
            str(turn_id) if turn_id else "",
            created,
            type,
            payload_text,
        ]
    )


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Link:
    """One stored event as the chain sees it, with what its hash should be."""

    id: int
    seq: int | None
    type: str
    turn_id: uuid.UUID | None
    created_at: datetime
    payload: Any
    prev_hash: str
    hash: str
    canonical: str | None  # None while unsealed (no seq or prev_hash to compute it from)

    @property
    def intact(self) -> bool:
        """Its content is what was sealed (says nothing of its place in the chain)."""
        return self.canonical is not None and digest(self.canonical) == self.hash


@dataclass(frozen=True)
class Damage:
    """The first thing wrong with a session's chain."""

    problem: Problem
    session_id: uuid.UUID
    seq: int | None  # the chain position at which it shows
    event_id: int | None  # the stored row there, if any
    detail: str

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "unsealed row"
        row = f", event id {self.event_id}" if self.event_id is not None else ""
        return f"session {self.session_id}: {self.problem} at {where}{row}: {self.detail}"


@dataclass(frozen=True)
class Report:
    session_id: uuid.UUID
    events: int
    head_seq: int
    damage: Damage | None


def _rows(queryset: QuerySet[SessionEvent]) -> QuerySet[Any]:
    return queryset.annotate(payload_text=Cast(F("payload"), output_field=TextField())).values(
        "id",
        "tenant_id",
        "session_id",
        "turn_id",
        "type",
        "created_at",
        "payload",
        "payload_text",
        "chain_seq",
        "prev_hash",
        "hash",
    )


def _link(row: dict[str, Any]) -> Link:
    text = None
    if row["chain_seq"] is not None and row["prev_hash"]:
        text = canonical(
            prev_hash=row["prev_hash"],
            tenant_id=row["tenant_id"],
            session_id=row["session_id"],
            seq=row["chain_seq"],
            event_id=row["id"],
            turn_id=row["turn_id"],
            created_at=row["created_at"],
            type=row["type"],
            payload_text=row["payload_text"],
        )
    return Link(
        id=row["id"],
        seq=row["chain_seq"],
        type=row["type"],
        turn_id=row["turn_id"],
        created_at=row["created_at"],
        payload=row["payload"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
        canonical=text,
    )


def chain_links(*, session: AgentSession, after_seq: int = 0) -> QuerySet[Any]:
    """The session's sealed events after `after_seq`, in chain order, as rows for `_link`."""
    return _rows(
        SessionEvent.objects.filter(
            tenant_id=session.tenant_id, session_id=session.id, chain_seq__gt=after_seq
        ).order_by("chain_seq", "id")
    )


def chain_head(*, session: AgentSession) -> tuple[int, str] | None:
    """(last seq, last hash) of the session's chain; None before its first event is sealed."""
    head = SessionChainHead.objects.filter(session_id=session.id).first()
    return (head.last_seq, head.last_hash) if head else None


def link_rows(rows: Any) -> Iterator[Link]:
    for row in rows:
        yield _link(row)


class ChainWalker:
    """Follows a chain link by link and names the first thing wrong with it.

    `step` takes the links in the order the chain stores them (by `chain_seq`, then id).
    Damage is classified where it shows: a seq that skips is `missing`; a row whose seq
    repeats, or whose `prev_hash` is not its predecessor's hash (two rows swapped, an event
    taken out and the rest renumbered) is `reordered`; a row whose content no longer matches
    its hash is `altered`. Ids are not checked for order: chain order is commit order, and
    two concurrent writers may commit in the other order than their ids. The id is hashed,
    so a changed id shows as `altered`.
    """

    def __init__(self, session_id: uuid.UUID, *, seq: int = 0, hash: str = GENESIS) -> None:
        self.session_id = session_id
        self.seq, self.hash = seq, hash
        self.count = 0

    def damage(self, problem: Problem, link: Link | None, seq: int | None, why: str) -> Damage:
        return Damage(problem, self.session_id, seq, link.id if link else None, why)

    def step(self, link: Link) -> Damage | None:
        self.count += 1
        expected = self.seq + 1
        if link.seq is None or not link.hash or not link.prev_hash:
            return self.damage("unsealed", link, None, "the row carries no chain link")
        if link.seq > expected:
            return self.damage(
                "missing",
                link,
                expected,
                f"no event with seq {expected} (the next stored one is seq {link.seq})",
            )
        if link.seq < expected:
            return self.damage("reordered", link, link.seq, f"seq {link.seq} appears twice")
        if link.prev_hash != self.hash:
            return self.damage(
                "reordered",
                link,
                link.seq,
                f"its prev_hash is not the hash of seq {self.seq}: an event before it was "
                "removed, replaced or moved",
            )
        if not link.intact:
            return self.damage("altered", link, link.seq, "its content does not match its hash")
        self.seq, self.hash = link.seq, link.hash
        return None

    def finish(self, head_seq: int, head_hash: str) -> Damage | None:
        """After the last link: the chain must end where its head says it does."""
        if head_seq > self.seq:
            return self.damage(
                "missing",
                None,
                self.seq + 1,
                f"the chain ends at seq {self.seq} but its head is at seq {head_seq}",
            )
        if head_seq == self.seq and head_hash != self.hash:
            return self.damage(
                "altered", None, self.seq, "the last event's hash differs from the chain head"
            )
        return None


def session_verify(*, session: AgentSession, chunk_size: int = 2000) -> Report:
    """Recompute and follow the session's whole chain; the first damage, if any.

    The head is read first: whatever it counts had committed, so every event up to it must
    be there; events sealed after that moment are left for the next run.
    """
    head = chain_head(session=session)
    head_seq, head_hash = head or (0, GENESIS)
    walker = ChainWalker(session.id)
    events = SessionEvent.objects.filter(tenant_id=session.tenant_id, session_id=session.id)
    for row in _rows(events.filter(chain_seq__isnull=True).order_by("id"))[:1]:
        return Report(session.id, 0, head_seq, walker.step(_link(row)))
    if head is not None:  # with no head, every row is one too many
        events = events.filter(chain_seq__lte=head_seq)
    rows = _rows(events.order_by("chain_seq", "id")).iterator(chunk_size=chunk_size)
    for link in link_rows(rows):
        damage = walker.step(link)
        if damage is not None:
            return Report(session.id, walker.count, head_seq, damage)
    if head is None and walker.count:
        damage = walker.damage(
            "missing", None, None, f"{walker.count} events but no chain head (it was deleted)"
        )
        return Report(session.id, walker.count, head_seq, damage)
    return Report(session.id, walker.count, head_seq, walker.finish(head_seq, head_hash))


def sessions_verify(*, session_ids: list[uuid.UUID] | None = None) -> Iterator[Report]:
    """Verify the given sessions, or every one, streamed: one session's rows at a time."""
    sessions = AgentSession.objects.only("id", "tenant_id").order_by("id")
    if session_ids is not None:
        sessions = sessions.filter(id__in=session_ids)
    for session in sessions.iterator(chunk_size=500):
        yield session_verify(session=session)


@dataclass(frozen=True)
class Page:
    """A page of a session's chain for export: its links in order, and the first damage seen
    on it (the page's links, and its first link against the one before it)."""

    session_id: uuid.UUID
    head: tuple[int, str] | None
    links: list[Link]
    linked: list[bool]  # per link: its prev_hash is the hash of the link before it
    next_after_seq: int | None
    damage: Damage | None


def session_audit_page(*, session: AgentSession, after_seq: int = 0, limit: int = 100) -> Page:
    """The session's sealed events after `after_seq` (at most `limit`), checked as they go.

    A damaged link is reported in the page, never raised: an archiver gets what is stored.
    """
    head = chain_head(session=session)
    walker = ChainWalker(session.id, seq=after_seq)
    damage: Damage | None = None
    if after_seq > (head[0] if head else 0):  # past the end: nothing, and nothing wrong
        return Page(session.id, head, [], [], None, None)
    if after_seq:
        anchor = chain_links(session=session, after_seq=after_seq - 1).filter(chain_seq=after_seq)
        found = [_link(row) for row in anchor[:1]]
        if found and found[0].hash:
            walker.hash = found[0].hash
        else:
            damage = walker.damage(
                "missing", None, after_seq, f"no event with seq {after_seq} to continue from"
            )
    rows = [_link(row) for row in chain_links(session=session, after_seq=after_seq)[: limit + 1]]
    more = len(rows) > limit
    links = rows[:limit]
    linked = []
    previous = walker.hash if damage is None else None
    for link in links:
        linked.append(previous is not None and link.prev_hash == previous)
        previous = link.hash
        if damage is None:
            damage = walker.step(link)
    if damage is None and not more:
        if head is None:
            if walker.count:
                damage = walker.damage("missing", None, None, "the chain head was deleted")
        else:
            damage = walker.finish(*head)
    return Page(
        session_id=session.id,
        head=head,
        links=links,
        linked=linked,
        next_after_seq=links[-1].seq if more and links else None,
        damage=damage,
    )
