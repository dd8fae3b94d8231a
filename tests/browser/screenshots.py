"""Rewrite the README screenshots (docs/screenshots/*.png) from the real app in Chromium.

    .venv/bin/python -m tests.browser.screenshots

Not a test: normal test runs never rewrite the images. It serves a fresh demo database of its own
(migrated and seeded) with uvicorn, like the browser tests, and needs Debian's Chromium.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from convergences.seed import DEMO_PASSWORD
from tests.browser.live import CHROMIUM, CHROMIUM_ARGS, ROOT, LiveServer, login

OUT = ROOT / "docs" / "screenshots"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="convergences-shots-") as tmp, LiveServer(Path(tmp)) as server, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            def page_for() -> Page:
                context = browser.new_context(base_url=server.url, locale="fr-FR",
                                              viewport={"width": 1280, "height": 800})
                return context.new_page()

            page = page_for()
            page.goto("/login")
            page.screenshot(path=str(OUT / "login.png"))

            login(page, "rh@bellerive.example", DEMO_PASSWORD)
            nav = page.get_by_role("navigation", name="Navigation principale")
            nav.get_by_role("link", name="Gestion").click()
            page.wait_for_url("**/agents")
            page.screenshot(path=str(OUT / "agents-grid.png"), full_page=True)

            agent = page_for()
            login(agent, "agent@bellerive.example", DEMO_PASSWORD)
            agent.wait_for_url("**/services")
            agent.screenshot(path=str(OUT / "services.png"))
        finally:
            browser.close()
    for name in ("login.png", "agents-grid.png", "services.png"):
        print(OUT / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
