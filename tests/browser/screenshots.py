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

            # The second step of a référent's login (2FA is mandatory for référents).
            second = page_for()
            second.goto("/login")
            second.get_by_label("Adresse électronique professionnelle").fill("rh@bellerive.example")
            second.get_by_label("Mot de passe", exact=True).fill(DEMO_PASSWORD)
            with second.expect_navigation():
                second.get_by_role("button", name="Se connecter", exact=True).click()
            second.wait_for_url("**/login/second-facteur**")
            second.screenshot(path=str(OUT / "second-factor.png"))

            login(page, "rh@bellerive.example", DEMO_PASSWORD)
            nav = page.get_by_role("navigation", name="Navigation principale")
            nav.get_by_role("link", name="Gestion").click()
            page.wait_for_url("**/agents")
            page.screenshot(path=str(OUT / "agents-grid.png"), full_page=True)

            agent = page_for()
            login(agent, "agent@bellerive.example", DEMO_PASSWORD)
            agent.wait_for_url("**/services")
            agent.screenshot(path=str(OUT / "services.png"))
            agent.goto("/compte")
            agent.screenshot(path=str(OUT / "account.png"), full_page=True)
            agent.goto("/compte/double-authentification/application")
            agent.screenshot(path=str(OUT / "enrol-totp.png"), full_page=True)
        finally:
            browser.close()
    for name in ("login.png", "second-factor.png", "agents-grid.png", "services.png", "account.png", "enrol-totp.png"):
        print(OUT / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
