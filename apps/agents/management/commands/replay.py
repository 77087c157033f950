"""`python manage.py replay <session>`: re-run a recorded session from its log, no live calls.

Exit status: 0 when it reproduces, 1 when it diverges (the first divergence is printed),
2 when it cannot be replayed (no such session, incomplete or damaged recorded data).
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandParser

from apps.agents.models import AgentSession
from apps.agents.replay import POLICY_SOURCES, ReplayReport, session_replay
from apps.core.exceptions import WardenError


class Command(BaseCommand):
    help = "Replay a recorded session from its log (recorded model outputs and tool results)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session", help="The session's id.")
        parser.add_argument(
            "--policies",
            choices=POLICY_SOURCES,
            default="recorded",
            help="recorded: the policy versions each decision used (reproduction, default); "
            "current: the agent's policies as they are now.",
        )
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            session_id = uuid.UUID(options["session"])
        except ValueError:
            self._fail(f"{options['session']!r} is not a session id.")
        # The operator's command sees every tenant (as `audit verify` does): it runs on the
        # platform's hosts, not for a tenant.
        session = AgentSession.objects.select_related("agent").filter(id=session_id).first()
        if session is None:
            self._fail(f"No session {session_id}.")
        try:
            report = session_replay(session=session, policies=options["policies"])
        except WardenError as exc:
            detail = f" {json.dumps(exc.details, sort_keys=True)}" if exc.details else ""
            self._fail(f"{exc.code}: {exc.message}{detail}")
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2, default=str))
        else:
            self._print(report)
        if not report.reproduces:
            sys.exit(1)

    def _fail(self, message: str) -> NoReturn:
        self.stderr.write(message)
        sys.exit(2)

    def _print(self, report: ReplayReport) -> None:
        self.stdout.write(f"session {report.session_id} (policies: {report.policies})")
        for turn in report.turns:
            mark = "ok" if turn.reproduces else "DIVERGES"
            note = f" — {turn.note}" if turn.note else ""
            self.stdout.write(
                f"  turn {turn.seq}: {mark} ({turn.nodes_compared} nodes compared, "
                f"recorded {turn.recorded_outcome or turn.recorded_status}){note}"
            )
        for skipped in report.skipped:
            self.stdout.write(f"  turn {skipped['seq']}: skipped ({skipped['status']})")
        divergence = report.divergence
        if divergence is None:
            self.stdout.write(self.style.SUCCESS("reproduces"))
            return
        where = f"turn {divergence.turn_seq}"
        if divergence.step_index is not None:
            where += f", step {divergence.step_index}"
        if divergence.call_index is not None:
            where += f", call {divergence.call_index}"
        shown = divergence.as_dict()
        self.stdout.write(self.style.ERROR(f"diverges at {where} ({divergence.kind})"))
        self.stdout.write(f"  {divergence.code}: {divergence.message}")
        if divergence.node_id:
            self.stdout.write(f"  node:     {divergence.node_id}")
        if divergence.field:
            self.stdout.write(f"  field:    {divergence.field}")
        self.stdout.write(f"  recorded: {json.dumps(shown['recorded'], default=str)}")
        self.stdout.write(f"  replayed: {json.dumps(shown['replayed'], default=str)}")
