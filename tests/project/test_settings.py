"""Settings are pure: importing any module under config/settings reads the environment (and,
for dev/test, the embedded services' state file) and nothing else. Deployments fail fast,
with a message, when a service URL is missing; dev and test find a running `make run` or
test run's services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_MODULES = sorted(
    f"config.settings.{path.stem}"
    for path in (ROOT / "config" / "settings").glob("*.py")
    if path.stem != "__init__"
)
# Nothing listens on port 1: a settings module that connected anywhere would be seen by the
# audit hook below, not by a server.
CLOSED_DB = "postgresql://warden@127.0.0.1:1/warden"
CLOSED_REDIS = "redis://127.0.0.1:1/0"

# Runs in a fresh interpreter: records, through an audit hook (PEP 578), every file opened for
# writing, directory made, file removed or renamed, process started and socket connected or
# bound while the settings module is imported.
_PROBE = r"""
import importlib, json, os, sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
PROCESS_EVENTS = {"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn",
                  "os.system", "os.exec", "pty.spawn"}
FS_EVENTS = {"os.mkdir", "os.remove", "os.rename", "os.rmdir", "os.chmod", "os.chown",
             "os.symlink", "os.link", "os.truncate", "shutil.rmtree", "shutil.move"}
SOCKET_EVENTS = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"}
seen = []

def hook(event, args):
    if event == "open":
        path, mode, flags = args
        if (isinstance(mode, str) and set(mode) & set("wax+")) or (flags or 0) & WRITE_FLAGS:
            seen.append(f"write {path}")
    elif event in PROCESS_EVENTS or event in SOCKET_EVENTS:
        seen.append(event)
    elif event in FS_EVENTS:
        seen.append(f"{event} {args[0]}")

sys.addaudithook(hook)
try:
    module = importlib.import_module(sys.argv[1])
except Exception as exc:
    outcome = {"error": type(exc).__name__, "message": str(exc)}
else:
    outcome = {
        name: getattr(module, name, None)
        for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SECRET_KEY")
    }
    outcome["DATABASE_HOST"] = getattr(module, "DATABASES", {}).get("default", {}).get("HOST")
    outcome["services"] = {
        name: getattr(module, name, None)
        for name in ("DATABASES", "CACHES", "CHANNEL_LAYERS", "CELERY_RESULT_BACKEND")
    }
outcome["side_effects"] = seen
print(json.dumps(outcome, default=lambda value: getattr(value, "__qualname__", repr(value))))
"""


def import_settings(module: str, var: Path, **env: str) -> dict[str, Any]:
    """Import `module` in a fresh interpreter with only `env` (plus PATH) for configuration
    and `var` as WARDEN_VAR_DIR; return what the probe saw."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "WARDEN_", "CELERY_", "DATABASE_", "REDIS_"))
    }
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        cwd=ROOT,
        # No .pyc files: byte-compiling the modules is Python's write, not the settings'.
        env={**base, "PYTHONDONTWRITEBYTECODE": "1", "WARDEN_VAR_DIR": str(var), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return outcome


@pytest.mark.parametrize("module", SETTINGS_MODULES)
def test_importing_settings_starts_nothing_and_writes_nothing(module: str, tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    outcome = import_settings(
        module,
        var,
        DATABASE_URL=CLOSED_DB,
        REDIS_URL=CLOSED_REDIS,
        DJANGO_SECRET_KEY="from-the-environment",
    )
    assert "error" not in outcome, outcome
    assert outcome["side_effects"] == []
    assert list(var.iterdir()) == []


@pytest.mark.parametrize("module", SETTINGS_MODULES)
def test_without_any_configuration_settings_still_write_and_start_nothing(
    module: str, tmp_path: Path
) -> None:
    # A fresh checkout: no URLs, no secret, no var/ at all. Some modules refuse to load (below);
    # none may create the var dir, a key file or a server on the way.
    var = tmp_path / "var"
    outcome = import_settings(module, var)
    assert outcome["side_effects"] == []
    assert not var.exists()


@pytest.mark.parametrize("module", ["config.settings.base", "config.settings.prod"])
def test_deployments_without_database_url_refuse_to_load_and_say_why(
    module: str, tmp_path: Path
) -> None:
    outcome = import_settings(
        module, tmp_path, REDIS_URL=CLOSED_REDIS, DJANGO_SECRET_KEY="from-the-environment"
    )
    assert outcome["error"] == "ImproperlyConfigured"
    assert outcome["message"].startswith("DATABASE_URL must be set (DATABASE_URL: PostgreSQL")
    assert "REDIS_URL" not in outcome["message"]  # only what is missing is named


@pytest.mark.parametrize("module", ["config.settings.base", "config.settings.prod"])
def test_deployments_never_fall_back_to_the_embedded_services(module: str, tmp_path: Path) -> None:
    # A state file left by `make run` on the machine changes nothing for a deployment.
    (tmp_path / "services.json").write_text(
        json.dumps({"database_url": "postgresql://postgres@127.0.0.1:5/warden"})
    )
    outcome = import_settings(
        module, tmp_path, REDIS_URL=CLOSED_REDIS, DJANGO_SECRET_KEY="from-the-environment"
    )
    assert outcome["error"] == "ImproperlyConfigured"
    assert "DATABASE_URL must be set" in outcome["message"]


def test_prod_without_redis_url_refuses_to_load(tmp_path: Path) -> None:
    outcome = import_settings(
        "config.settings.prod", tmp_path, DATABASE_URL=CLOSED_DB, DJANGO_SECRET_KEY="s"
    )
    assert outcome["error"] == "ImproperlyConfigured"
    assert outcome["message"].startswith("REDIS_URL must be set")


def test_prod_without_secret_key_refuses_to_load(tmp_path: Path) -> None:
    outcome = import_settings(
        "config.settings.prod", tmp_path, DATABASE_URL=CLOSED_DB, REDIS_URL=CLOSED_REDIS
    )
    assert outcome["error"] == "ConfigError"
    assert "DJANGO_SECRET_KEY" in outcome["message"]


def test_prod_takes_its_services_from_the_environment(tmp_path: Path) -> None:
    outcome = import_settings(
        "config.settings.prod",
        tmp_path,
        DATABASE_URL="postgresql://warden:pw@db.internal:5432/warden",
        REDIS_URL="redis://redis.internal:6379/0",
        DJANGO_SECRET_KEY="s",
    )
    assert outcome["DATABASE_HOST"] == "db.internal"
    assert outcome["CELERY_BROKER_URL"] == "redis://redis.internal:6379/0"


def _state_file(var: Path, database_url: str, redis_url: str) -> None:
    var.mkdir(parents=True, exist_ok=True)
    (var / "services.json").write_text(
        json.dumps({"database_url": database_url, "redis_url": redis_url})
    )


def test_dev_settings_find_the_services_of_a_running_make_run(tmp_path: Path) -> None:
    # What `manage.py shell` beside `make run` sees: the state file devtools/embedded.py keeps.
    _state_file(tmp_path, "postgresql://postgres@127.0.0.1:5433/warden", "redis://127.0.0.1:6390/0")
    (tmp_path / "secret_key").write_text("per-checkout-key\n")
    outcome = import_settings("config.settings.dev", tmp_path)
    assert outcome["DATABASE_URL"] == "postgresql://postgres@127.0.0.1:5433/warden"
    assert outcome["REDIS_URL"] == "redis://127.0.0.1:6390/0"
    assert outcome["CELERY_BROKER_URL"] == "redis://127.0.0.1:6390/0"
    assert outcome["SECRET_KEY"] == "per-checkout-key"
    assert outcome["side_effects"] == []


def test_urls_in_the_environment_win_over_the_state_file(tmp_path: Path) -> None:
    _state_file(tmp_path / "test", "postgresql://postgres@127.0.0.1:5433/warden", "redis://x:1/0")
    outcome = import_settings("config.settings.test", tmp_path, REDIS_URL="redis://mine:6379/2")
    assert outcome["DATABASE_URL"] == "postgresql://postgres@127.0.0.1:5433/warden"
    assert outcome["REDIS_URL"] == "redis://mine:6379/2"


def test_dev_settings_without_services_load_and_say_so_at_first_use(tmp_path: Path) -> None:
    outcome = import_settings("config.settings.dev", tmp_path, DJANGO_SECRET_KEY="k")
    assert outcome["side_effects"] == []
    assert outcome["services"]["DATABASES"] == {"default": {"ENGINE": "config.db_not_running"}}
    assert outcome["REDIS_URL"] == "redis://127.0.0.1:1/0"


def _manage(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "WARDEN_", "CELERY_", "DATABASE_", "REDIS_"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, "WARDEN_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_fresh_checkout_runs_the_commands_that_need_no_service(tmp_path: Path) -> None:
    # Default (dev) settings, no `make run` ever, no URLs, no secret key file.
    checked = _manage(tmp_path, "makemigrations", "--check", "--dry-run")
    assert checked.returncode == 0, checked.stderr
    assert "No changes detected" in checked.stdout
    # A command that needs the database fails at its first query, saying how to get one.
    migrate = _manage(tmp_path, "migrate", "--plan")
    assert migrate.returncode != 0
    assert "OperationalError: No database" in migrate.stderr
    assert "make run" in migrate.stderr
    assert list(tmp_path.iterdir()) == []  # and nothing was written


def test_dev_settings_without_a_secret_key_use_one_for_the_process_only(tmp_path: Path) -> None:
    first, second = (
        import_settings(
            "config.settings.dev", tmp_path, DATABASE_URL=CLOSED_DB, REDIS_URL=CLOSED_REDIS
        )
        for _ in range(2)
    )
    assert first["side_effects"] == [] and not (tmp_path / "secret_key").exists()
    assert len(first["SECRET_KEY"]) >= 50 and first["SECRET_KEY"] != second["SECRET_KEY"]


def test_dev_settings_use_the_key_make_run_keeps(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("kept-by-make-run\n")
    outcome = import_settings(
        "config.settings.dev", tmp_path, DATABASE_URL=CLOSED_DB, REDIS_URL=CLOSED_REDIS
    )
    assert outcome["SECRET_KEY"] == "kept-by-make-run"


def test_a_damaged_state_file_is_no_service(tmp_path: Path) -> None:
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "services.json").write_text("{not json")
    outcome = import_settings("config.settings.test", tmp_path)
    assert outcome["services"]["DATABASES"] == {"default": {"ENGINE": "config.db_not_running"}}


def test_every_environment_builds_the_same_service_settings_from_the_same_urls(
    tmp_path: Path,
) -> None:
    # base.py, dev.py and test.py end with the same block; one that drifted would give an
    # environment a different pool, cache or channel layer than the others.
    env = {"DATABASE_URL": CLOSED_DB, "REDIS_URL": CLOSED_REDIS, "DJANGO_SECRET_KEY": "k"}
    built = {}
    for module in ("config.settings.base", "config.settings.dev", "config.settings.test"):
        services = import_settings(module, tmp_path, **env)["services"]
        services["DATABASES"]["default"]["OPTIONS"].pop("application_name")  # has the pid
        services["CACHES"]["default"].pop("KEY_PREFIX")  # the tests' own prefix
        built[module] = services
    assert built["config.settings.base"]["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"] == [
        {"address": CLOSED_REDIS, "socket_timeout": 30}
    ]
    assert built["config.settings.dev"] == built["config.settings.base"]
    assert built["config.settings.test"] == built["config.settings.base"]
