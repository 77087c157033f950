"""Browser tests of the console: Playwright for Python driving Chromium (Debian's
`chromium`, or WARDEN_CHROMIUM) against pytest-django's live server. Where there is no
Chromium (or no Playwright) every test here is skipped, and the run says so loudly."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.approvals.conftest import dave

__all__ = ["dave"]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "artifacts" / "browser"
DOCS_IMG = ROOT / "docs" / "img"
PASSWORD = "console-pass-1234"  # test accounts only

CHROMIUM = os.environ.get("WARDEN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]

if sync_playwright is None:
    WHY_SKIPPED = "playwright is not installed (make install installs the dev dependencies)"
elif not Path(CHROMIUM).exists():
    WHY_SKIPPED = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set WARDEN_CHROMIUM)"
else:
    WHY_SKIPPED = ""

# Playwright's sync API runs its event loop in a greenlet of this thread; Django would take
# that for async code and refuse the tests' own ORM calls made between page actions.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not WHY_SKIPPED:
        return
    here = str(Path(__file__).parent)
    marker = pytest.mark.skip(reason=f"BROWSER TESTS SKIPPED: {WHY_SKIPPED}")
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(marker)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if WHY_SKIPPED:
        terminalreporter.write_sep("!", f"CONSOLE BROWSER TESTS SKIPPED: {WHY_SKIPPED}", red=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Per module, not per session: Playwright's sync API keeps an event loop running on the
    # test thread while it is open, and every later test that runs a loop of its own
    # (async_to_sync, channels' communicators) would fail with "cannot be called from a
    # running event loop".
    with sync_playwright() as playwright:
        # Root in a container has no user namespaces for Chromium's sandbox.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    opened = context.new_page()
    yield opened
    context.close()


def sign_in(page: Page, base_url: str, user: Any) -> None:
    """Through the console's sign-in form, as a person would."""
    user.set_password(PASSWORD)
    user.save(update_fields=["password"])
    page.goto(f"{base_url}/admin/login/")
    page.fill("input[name=username]", user.get_username())
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_load_state()
    assert page.url == f"{base_url}/admin/", page.locator("body").inner_text()[:2000]


def screenshot(page: Page, name: str, *, docs: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    # The README's pictures change only when asked (WARDEN_README_SCREENSHOTS=1), as the chat's:
    # a test run leaves the checkout's tracked files alone.
    if docs and os.environ.get("WARDEN_README_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / f"{name}.png")
    return path
