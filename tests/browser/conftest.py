"""Browser tests: Playwright for Python driving headless Chromium against a real platform
(daphne serving the ASGI app — HTTP and websockets — and a real Celery worker, on the test
database).

Chromium is Debian's `chromium` (`apt-get install chromium`; `make test`/.ci/run install it in
CI when they can) or the binary `WARDEN_CHROMIUM` names. Without one the tests are skipped,
loudly: a warning in the summary says so. Screenshots go to var/artifacts/browser/;
`WARDEN_README_SCREENSHOTS=1` also copies the chat's to docs/img/chat.png for the README.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, WorkerProcess, _test_env

ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"
ARTIFACTS = ROOT / "var" / "artifacts" / "browser"
DAPHNE = [sys.executable, "-m", "daphne", "-b", "127.0.0.1"]
PASSWORD = "correct horse battery staple"  # tests/factories.py's UserFactory


def chromium_path() -> str | None:
    """WARDEN_CHROMIUM when set (and only it), else Debian's or one on PATH."""
    named = os.environ.get("WARDEN_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    candidates = [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _why_not() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the `playwright` package is not installed (make install)"
    if chromium_path() is None:
        return "no Chromium found (apt-get install chromium, or set WARDEN_CHROMIUM)"
    return None


SKIP_REASON = _why_not()
if SKIP_REASON is None:
    from playwright.sync_api import expect

    # A 2-core CI machine running a worker, daphne and Chromium at once is slow to settle.
    expect.set_options(timeout=20_000)
LOUD = f"BROWSER TESTS SKIPPED: {SKIP_REASON}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SKIP_REASON is None:
        return
    marked = [item for item in items if item.get_closest_marker("browser")]
    for item in marked:
        item.add_marker(pytest.mark.skip(reason=LOUD))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SKIP_REASON is not None:
        terminalreporter.write_sep("!", LOUD, red=True, bold=True)


class RestartableServer:
    """daphne on a fixed port, which a test may stop and start again (a server restart)."""

    def __init__(self) -> None:
        from devtools.embedded import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = ROOT / "var" / "test" / "daphne-browser.log"
        self.env = {k: v for k, v in _test_env().items() if k != ASYNC_UNSAFE}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from devtools.embedded import port_in_use

        self.proc = subprocess.Popen(
            [*DAPHNE, "-p", str(self.port), "config.asgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not port_in_use(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daphne did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server(django_db_setup: None) -> Iterator[RestartableServer]:
    live = RestartableServer()
    live.start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def chromium(celery_worker: WorkerProcess) -> Iterator[Any]:
    """Chromium for this module's tests. Playwright's sync API keeps an asyncio loop on this
    thread from here on, which Django's ORM takes for async code, so the tests' own (plain,
    synchronous) ORM calls are allowed while it runs; the worker started before, and daphne
    is started without it."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    assert path is not None
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    try:
        with sync_playwright() as playwright:
            # --no-sandbox: CI containers run as root, where Chromium's sandbox can't start.
            browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


@pytest.fixture
def new_page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """`new_page(base_url)` → a page in a fresh browser context (its own cookies)."""
    contexts: list[Any] = []

    def make(base_url: str, **options: Any) -> Any:
        context = chromium.new_context(
            base_url=base_url, viewport=options.pop("viewport", {"width": 1280, "height": 900})
        )
        context.set_default_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda m: print(f"[browser {m.type}] {m.text}"))
        return page

    yield make
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for index, context in enumerate(contexts):
        for page in context.pages:
            if not page.is_closed():
                name = f"{request.node.name}-{index}-final.png"
                page.screenshot(path=str(ARTIFACTS / name), full_page=True)
        context.close()


def sign_in(page: Any, username: str, password: str = PASSWORD) -> None:
    page.goto("/chat/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/chat/(?!login)"))


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
