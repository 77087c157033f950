"""`make run`: start embedded services, migrate, seed, run web + worker + beat; stop all on Ctrl-C.

Services given by URL (DATABASE_URL, REDIS_URL) are used as they are; only the
missing ones are started embedded, with data under var/ that the next run reuses.

Everything `make run` needs on disk is made here, not in the settings (which only read):
the embedded services' data and state file, and the per-checkout secret key.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from config.env import ConfigError, env_int, env_str
from devtools.embedded import (
    EmbeddedServiceError,
    free_port,
    port_in_use,
    services_start,
    services_stop,
)

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _log(msg: str) -> None:
    print(f"[warden] {msg}", flush=True)


def _acquire_lock(var: Path) -> IO[str]:
    var.mkdir(parents=True, exist_ok=True)
    handle = (var / "run.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        _log(f"another `make run` (pid {owner}) is using {var}; stop it first.")
        sys.exit(1)
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _local_llm_command(env: dict[str, str]) -> list[str] | None:
    """The supervisor of the embedded local model, unless WARDEN_LOCAL_LLM=off.

    It runs beside web and worker and never holds them up: when llama.cpp isn't installed
    it builds it in the background (var/local-llm-build.log), then serves the model; its
    endpoint says building / starting / ready / failed meanwhile. The port is fixed here,
    before anything starts, because the worker's egress allowance and the seeded endpoint
    both name it.
    """
    if env_str("WARDEN_LOCAL_LLM", "auto").lower() in ("off", "0", "false", "no"):
        _log("local model off (WARDEN_LOCAL_LLM=off): the scripted demo agent works without it.")
        return None
    model = env_str("WARDEN_LOCAL_LLM_MODEL", "smollm2")
    port = env_int("WARDEN_LOCAL_LLM_PORT", 8081)
    if port_in_use(port):
        port = free_port()
    env["WARDEN_LOCAL_LLM_URL"] = f"http://127.0.0.1:{port}/v1"
    # Model endpoints connect through the egress guard, which refuses loopback: the local
    # model's own host:port is the one loopback address the demo needs, and all it allows.
    allowed = [e for e in env.get("WARDEN_EGRESS_ALLOW", "").split(",") if e.strip()]
    env["WARDEN_EGRESS_ALLOW"] = ",".join([*allowed, f"127.0.0.1:{port}"])
    env["WARDEN_LOCAL_LLM_MODEL"] = model
    command = [PY, "manage.py", "local_model", "--model", model, "--port", str(port)]
    build = env_str("WARDEN_LOCAL_LLM_BUILD_COMMAND", "")
    return [*command, "--build-command", build] if build else command


def ensure_secret_key(var: Path) -> None:
    """A per-checkout DJANGO_SECRET_KEY in var/secret_key (0600), created once so sessions
    survive restarts of `make run`; config/settings/dev.py reads it."""
    key_file = var / "secret_key"
    if key_file.exists():
        return
    var.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(50))


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, check=True)


def main() -> int:
    try:
        var = Path(env_str("WARDEN_VAR_DIR", str(ROOT / "var")))
        host = env_str("WARDEN_HOST", "127.0.0.1")
        port = env_int("WARDEN_PORT", 8000)
    except ConfigError as exc:
        _log(str(exc))
        return 2
    lock = _acquire_lock(var)
    if port_in_use(port, host if host != "0.0.0.0" else "127.0.0.1"):  # noqa: S104
        _log(f"port {port} is already in use; set WARDEN_PORT to another port.")
        return 1

    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
    if not env.get("DJANGO_SECRET_KEY") and not env.get("DJANGO_SECRET_KEY_FILE"):
        ensure_secret_key(var)
    env.setdefault("WARDEN_LOG_FORMAT", "console")
    # A first local run has one console account: let it approve the demo agent's risky step
    # itself (the chat's Approve button). Deployments keep the four-eyes default (false).
    env.setdefault("WARDEN_APPROVAL_ALLOW_SELF", "true")
    need_db, need_redis = not env.get("DATABASE_URL"), not env.get("REDIS_URL")
    started_embedded = need_db or need_redis
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        if started_embedded:
            # We hold the lock, so anything still running under var/ is left over
            # from a run that was killed: stop it before starting afresh.
            services_stop(var)
            _log("starting embedded services (PostgreSQL+pgvector, Redis) under var/ …")
            try:
                state = services_start(
                    var, database="warden", need_db=need_db, need_redis=need_redis, reuse=False
                )
            except EmbeddedServiceError as exc:
                _log(str(exc))
                return 1
            if state.database_url and need_db:
                env["DATABASE_URL"] = state.database_url
            if state.redis_url and need_redis:
                env["REDIS_URL"] = state.redis_url
        local_llm = _local_llm_command(env)
        _manage(env, "migrate", "--no-input", "-v", "0")
        _manage(env, "seed_demo")
        if local_llm is not None:
            children.append(subprocess.Popen(local_llm, cwd=ROOT, env=env))
            _log(f"started local model supervisor (pid {children[-1].pid})")
        commands = {
            "web": [PY, "-m", "daphne", "-b", host, "-p", str(port), "config.asgi:application"],
            "worker": [
                PY,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-l",
                "INFO",
                # Pool and concurrency come from the settings: the threads pool with
                # WARDEN_WORKER_TURNS (default 32) turns in flight.
                "-n",
                "worker@%h",
            ],
            "beat": [
                PY,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "-l",
                "INFO",
                "--schedule",
                str(var / "celerybeat-schedule"),
            ],
        }
        for name, cmd in commands.items():
            children.append(subprocess.Popen(cmd, cwd=ROOT, env=env))
            _log(f"started {name} (pid {children[-1].pid})")
        base = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"  # noqa: S104
        _log("")
        _log(f"chat      {base}/chat/")
        _log(f"console   {base}/admin/")
        _log(f"API docs  {base}/api/v1/docs/")
        _log(f"ready     {base}/readyz")
        if local_llm is not None:
            _log(
                "local     the local agent joins when its model is ready (state: "
                f"{base}/admin/llm/modelendpoint/ or GET {base}/api/v1/model-endpoints)"
            )
        _log("Ctrl-C stops everything; data stays in var/ for the next run.")
        while not stopping:
            for child in children:
                if child.poll() is not None:
                    name = " ".join(map(str, list(child.args)[1:4]))  # type: ignore[arg-type]
                    _log(f"process {name} exited with {child.returncode}; stopping.")
                    stopping = True
            time.sleep(0.5)
        return 0
    except subprocess.CalledProcessError as exc:
        _log(f"{' '.join(map(str, exc.cmd[1:]))} failed with exit code {exc.returncode}")
        return 1
    finally:
        _log("stopping …")
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        if started_embedded:
            services_stop(var)
        lock.close()
        _log("stopped.")


if __name__ == "__main__":
    sys.exit(main())
