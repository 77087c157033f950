"""Build (if needed) and serve the embedded local model, recording its endpoint's state.

`make run` starts this beside the web and worker processes, so the platform serves at once
while llama.cpp compiles. It runs until SIGINT/SIGTERM, then stops the build or the server.
"""

from __future__ import annotations

import shlex
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.llm.local_models import DEFAULT_BUILD_COMMAND, LocalModelSupervisor


class Command(BaseCommand):
    help = (
        "Build llama.cpp if it is missing (in the background, logged under var/), serve the "
        "embedded local model, and keep its endpoints' state (building/starting/ready/failed) "
        "up to date until stopped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", default="smollm2")
        parser.add_argument("--port", type=int, default=8081)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--build-command",
            default=DEFAULT_BUILD_COMMAND,
            help="What installs llama.cpp and the model when they are missing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()

        def _stop(*_: object) -> None:
            stop.set()

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)

        def report(state: str, detail: str) -> None:
            self.stdout.write(f"[warden] local model {options['model']}: {state}: {detail}")
            self.stdout.flush()

        LocalModelSupervisor(
            model=options["model"],
            port=options["port"],
            host=options["host"],
            var_dir=settings.VAR_DIR,
            stop=stop,
            build_command=shlex.split(options["build_command"]),
            cwd=settings.BASE_DIR,
            on_state=report,
        ).run()
