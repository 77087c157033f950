"""devtools/: the pytest plugin gives the tests their services before Django loads the
settings, and leaves yours alone; the embedded services and `make run` keep their files
in the var dir, never the settings."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.devrun import ensure_secret_key
from devtools.embedded import ServiceState, postgres_url, services_stop
from devtools.pytest_services import ensure_services, services_dir

ROOT = Path(__file__).resolve().parents[2]


def test_the_plugin_keeps_service_urls_that_are_set_and_starts_nothing(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "WARDEN_"))}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--collect-only",
            "-q",
            "tests/core/test_health.py",
        ],
        cwd=ROOT,
        env={
            **base,
            "WARDEN_VAR_DIR": str(tmp_path),
            "DATABASE_URL": "postgresql://warden@127.0.0.1:1/warden",
            "REDIS_URL": "redis://127.0.0.1:1/0",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_health.py::" in result.stdout  # Django loaded the test settings and collected
    assert list(tmp_path.iterdir()) == []  # no embedded service under var/test


def test_the_plugin_exports_the_embedded_services_for_every_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = ServiceState.load(services_dir())
    if state is None or state.database_url != os.environ.get("DATABASE_URL"):
        pytest.skip("this run uses services given by DATABASE_URL, not the embedded ones")
    expected = (os.environ["DATABASE_URL"], os.environ["REDIS_URL"])
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.delenv("REDIS_URL")
    ensure_services()  # the running ones are reused, not started again
    assert (os.environ["DATABASE_URL"], os.environ["REDIS_URL"]) == expected


@pytest.mark.django_db
def test_the_platform_reaches_the_embedded_postgres_through_its_socket() -> None:
    state = ServiceState.load(services_dir())
    if state is None or state.database_url != os.environ.get("DATABASE_URL"):
        pytest.skip("this run uses services given by DATABASE_URL, not the embedded ones")
    from django.db import connection

    assert connection.settings_dict["HOST"] == str((services_dir() / "postgres").resolve())
    with connection.cursor() as cursor:
        cursor.execute("SELECT inet_server_addr()")  # NULL on a Unix-domain socket
        assert cursor.fetchone() == (None,)


def test_a_socket_path_too_long_for_the_kernel_falls_back_to_tcp(tmp_path: Path) -> None:
    import dj_database_url

    short = dj_database_url.parse(postgres_url(tmp_path, 5432, "warden"))
    assert (short["HOST"], short["PORT"], short["NAME"]) == (
        str(tmp_path.resolve()),
        5432,
        "warden",
    )
    deep = tmp_path / ("d" * 100)
    assert postgres_url(deep, 5432, "warden") == "postgresql://postgres@127.0.0.1:5432/warden"


def test_stopping_the_embedded_services_forgets_them(tmp_path: Path) -> None:
    ServiceState(database_url="postgresql://postgres@127.0.0.1:5/warden").save(tmp_path)
    services_stop(tmp_path)
    # Dev settings must not point manage.py at servers that are gone.
    assert not (tmp_path / "services.json").exists()


def test_make_run_creates_the_secret_key_once_and_keeps_it_private(tmp_path: Path) -> None:
    var = tmp_path / "var"
    ensure_secret_key(var)
    key = (var / "secret_key").read_text()
    assert len(key) >= 50
    assert stat.S_IMODE((var / "secret_key").stat().st_mode) == 0o600
    ensure_secret_key(var)  # a restart keeps the key, so sessions survive it
    assert (var / "secret_key").read_text() == key


def test_dev_settings_read_the_key_make_run_made(tmp_path: Path) -> None:
    ensure_secret_key(tmp_path)
    (tmp_path / "services.json").write_text(
        json.dumps({"database_url": "postgresql://p@127.0.0.1:1/w", "redis_url": "redis://h:1/0"})
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "WARDEN_"))}
    base = {k: v for k, v in base.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings.dev as s; print(s.SECRET_KEY)"],
        cwd=ROOT,
        env={**base, "WARDEN_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == (tmp_path / "secret_key").read_text()
