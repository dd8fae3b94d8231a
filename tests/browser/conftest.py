"""Browser fixtures: the real app under uvicorn (session), one real Chromium (this package), fresh visitors.

Chromium is Debian's (/usr/bin/chromium, ``make system-deps``): Playwright's own browser downloads are
not used. Without it the browser tests are skipped, except under CI=true where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.browser.live import CHROMIUM, CHROMIUM_ARGS, LiveServer
from tests.helpers import scratch_directory, unavailable
from tests.mailbox import Mailbox


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def live_server(mailbox: Mailbox) -> Iterator[LiveServer]:
    with scratch_directory("convergences-browser-") as directory:
        server = LiveServer(directory, smtp_port=mailbox.port).start()
        try:
            yield server
        finally:
            server.stop()


# Package scope, not session: while Playwright's sync API is alive, its dispatcher leaves an event loop
# marked as running in this thread, and the asyncio tests that come after would fail to start theirs.
@pytest.fixture(scope="package")
def chromium() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        unavailable(f"Chromium not found at {CHROMIUM} (install it with `make system-deps`)", "browser tests")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@dataclass
class Visitor:
    """One person at one browser: its own cookies, and what its pages printed on the console."""

    page: Page
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m]


@pytest.fixture
def visitor(chromium: Browser, live_server: LiveServer) -> Iterator[Callable[[], Visitor]]:
    """A factory of independent visitors (each a fresh browser context), closed after the test."""
    contexts: list[BrowserContext] = []

    def make() -> Visitor:
        context = chromium.new_context(base_url=live_server.url, locale="fr-FR",
                                       viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        seen = Visitor(page)
        page.on("console", lambda message: seen.console.append(f"[{message.type}] {message.text}"))
        page.on("pageerror", lambda error: seen.errors.append(str(error)))
        return seen

    yield make
    for context in contexts:
        context.close()
