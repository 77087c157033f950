"""`python manage.py audit verify [<session> …]`: check the hash chains of the event log.

Every hash is recomputed here, in Python, from the stored rows (apps/agents/audit.py), and
every link followed; nothing is taken from the database's sealing trigger on trust. With no
session, every session is checked, one at a time (memory stays bounded).

Exit status: 0 when every chain checked is intact (a one-line summary says so); 1 when a
chain is damaged — one line per damaged session, on stderr, names its first altered,
missing, reordered or unsealed event (session, seq, event id); 2 for a session id that is
not one.
"""

from __future__ import annotations

import uuid
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.agents.audit import sessions_verify
from apps.agents.models import AgentSession


class Command(BaseCommand):
    help = "Verify the event log's hash chains (all sessions, or the ones named)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        verify = sub.add_parser("verify", help="recompute and follow each session's chain")
        verify.add_argument("sessions", nargs="*", metavar="SESSION", help="session ids")

    def handle(self, *args: Any, **options: Any) -> None:
        session_ids: list[uuid.UUID] | None = None
        if options["sessions"]:
            try:
                session_ids = [uuid.UUID(raw) for raw in options["sessions"]]
            except ValueError:
                raise CommandError("A session is named by its id (a UUID).", returncode=2) from None
            known = AgentSession.objects.filter(id__in=session_ids).values_list("id", flat=True)
            found = set(known)
            unknown = [str(sid) for sid in session_ids if sid not in found]
            if unknown:
                raise CommandError(f"No such session: {', '.join(unknown)}", returncode=2)
        sessions = events = damaged = 0
        for report in sessions_verify(session_ids=session_ids):
            sessions += 1
            events += report.events
            if report.damage is not None:
                damaged += 1
                self.stderr.write(f"DAMAGED {report.damage}")
        if damaged:
            raise CommandError(
                f"{damaged} of {sessions} session chains damaged ({events} events read)."
            )
        self.stdout.write(f"intact: {sessions} sessions, {events} events, every hash recomputed")
