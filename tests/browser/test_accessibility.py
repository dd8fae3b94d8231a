"""axe-core (WCAG 2.0/2.1 A and AA) on every page each demo role can reach, plus a few rules of our own.

Pages are discovered by following the links each role is shown (navigation, content, footer), so a
page added later is audited as soon as something links to it. One page per route pattern per role
(``/employeurs/3/agents/12`` and ``/employeurs/3/agents/14`` are the same template). The pages no
link reaches (login error, invitation, error pages, forms swapped by htmx) are visited explicitly.

axe-core is vendored for the tests only: tests/browser/vendor/axe.min.js (4.14.1, see its README). It is
injected with an init script, which the page's Content-Security-Policy does not apply to, so the CSP
is the production one and its violations are still reported on the console.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from convergences.seed import DEMO_PASSWORD, demo_accounts_json
from tests.browser.conftest import Visitor
from tests.browser.live import LiveServer, login
from tests.mailbox import Mailbox, invitation_path

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AXE_VERSION = "4.14.1"
AXE_SOURCE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
MAX_PAGES_PER_ROLE = 60
# Never followed: they leave the app, act, or are not HTML pages.
SKIPPED_PREFIXES = ("/static/", "/schema", "/logout", "/healthz")

RUN_AXE = """async (tags) => {
  const results = await axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
  return results.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map(n => ({target: n.target.join(" "), html: n.html.slice(0, 300),
                              summary: (n.failureSummary || "").replace(/\\s+/g, " ")}))
  }));
}"""

PAGE_FACTS = """() => ({
  lang: document.documentElement.getAttribute("lang"),
  viewport: (document.querySelector('meta[name="viewport"]') || {}).content || null,
  title: document.title,
  h1: document.querySelectorAll("h1").length,
})"""


@dataclass
class Audit:
    """Everything wrong found on one visitor's pages, reported together at the end."""

    problems: list[str] = field(default_factory=list)
    audited: list[str] = field(default_factory=list)

    def check(self, visitor: Visitor, label: str) -> None:
        page = visitor.page
        page.wait_for_load_state("load")
        where = f"{label} ({urlsplit(page.url).path})"
        self.audited.append(where)
        facts = page.evaluate(PAGE_FACTS)
        if facts["lang"] != "fr":
            self.problems.append(f"{where}: <html lang> is {facts['lang']!r}, expected 'fr'")
        viewport = (facts["viewport"] or "").replace(" ", "").lower()
        if not viewport or "user-scalable=no" in viewport or "user-scalable=0" in viewport \
                or "maximum-scale" in viewport:
            self.problems.append(f"{where}: zoom must stay possible, meta viewport is {facts['viewport']!r}")
        if facts["h1"] != 1:
            self.problems.append(f"{where}: {facts['h1']} <h1> on the page, expected exactly one")
        for violation in page.evaluate(RUN_AXE, TAGS):
            lines = [f"{where}: axe {violation['id']} ({violation['impact']}): {violation['help']} "
                     f"<{violation['helpUrl']}>"]
            for node in violation["nodes"][:8]:
                lines.append(f"    at {node['target']}: {node['html']}\n      {node['summary']}")
            self.problems.append("\n".join(lines))

    def console(self, visitor: Visitor) -> None:
        for message in visitor.csp_violations():
            self.problems.append(f"CSP violation on the console: {message}")
        for error in visitor.errors:
            self.problems.append(f"JavaScript error: {error}")

    def assert_clean(self) -> None:
        print("audited:", *self.audited, sep="\n  ")
        assert self.audited, "no page was audited"
        report = "\n".join(self.problems)
        assert not self.problems, (f"{len(self.problems)} accessibility problem(s) on "
                                   f"{len(self.audited)} page(s):\n{report}")


def auditor(visitor: Callable[[], Visitor]) -> Visitor:
    seen = visitor()
    seen.page.context.add_init_script(script=AXE_SOURCE)
    return seen


def pattern(path: str) -> str:
    return re.sub(r"/\d+(?=/|$)", "/{id}", path.rstrip("/") or "/")


def crawl(seen: Visitor, audit: Audit, origin: str) -> list[str]:
    """Audit every page reachable by links from "/", one per route pattern; return the broken links."""
    page = seen.page
    queue, queued, done, broken = ["/"], {"/"}, set(), []
    while queue and len(done) < MAX_PAGES_PER_ROLE:
        path = queue.pop(0)
        response = page.goto(path)
        final = urlsplit(page.url).path
        status = response.status if response else 0
        if status >= 400:
            broken.append(f"{path} -> HTTP {status}")
        if pattern(final) in done:
            continue
        done.add(pattern(final))
        content_type = (response.headers.get("content-type", "") if response else "")
        if "text/html" not in content_type:
            continue
        audit.check(seen, f"GET {path}")
        # Download links (CSV exports) are files, not pages to audit.
        for href in page.eval_on_selector_all("a[href]:not([download])", "links => links.map(a => a.href)"):
            parts = urlsplit(href)
            if f"{parts.scheme}://{parts.netloc}" != origin or parts.path.startswith(SKIPPED_PREFIXES):
                continue
            key = pattern(parts.path)
            if key in queued:
                continue
            queued.add(key)
            queue.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return broken


def representatives() -> list[str]:
    """One demo account per distinct set of roles (and number of employers)."""
    chosen: dict[tuple[tuple[str, ...], int], str] = {}
    for account in demo_accounts_json()["accounts"]:
        chosen.setdefault((tuple(account["roles"]), len(account["employers"])), account["email"])
    return list(chosen.values())


@pytest.mark.parametrize("email", representatives())
def test_pages_reachable_by_role(email: str, visitor: Callable[[], Visitor], live_server: LiveServer) -> None:
    seen, audit = auditor(visitor), Audit()
    login(seen.page, email, DEMO_PASSWORD)
    broken = crawl(seen, audit, live_server.url)
    # The error page as this role sees it (with the navigation).
    seen.page.goto("/cette-page-n-existe-pas")
    audit.check(seen, "404 (connected)")
    audit.console(seen)
    audit.assert_clean()
    server_errors = [b for b in broken if not b.endswith(("HTTP 404",))]
    assert not server_errors, f"links shown to {email} that fail: {server_errors}"
    if broken:
        warnings.warn(f"links shown to {email} lead to missing pages: {broken}", stacklevel=1)


def test_pages_without_login(visitor: Callable[[], Visitor]) -> None:
    seen, audit = auditor(visitor), Audit()
    page = seen.page
    page.goto("/login")
    audit.check(seen, "login")
    page.get_by_label("Adresse électronique professionnelle").fill("inconnu@example.org")
    page.get_by_label("Mot de passe").fill("pas le bon mot de passe")
    with page.expect_navigation():
        page.get_by_label("Mot de passe").press("Enter")
    expect(page.locator("#login-error")).to_be_visible()
    audit.check(seen, "login with an error")
    page.goto("/cette-page-n-existe-pas")
    audit.check(seen, "404")
    page.goto("/invitation/lien-inconnu")
    audit.check(seen, "invitation no longer valid")
    page.goto("/demo/boite-mail")
    audit.check(seen, "demo mailbox")
    if page.goto("/accessibilite").status == 200:  # type: ignore[union-attr]
        audit.check(seen, "accessibility statement")
    audit.console(seen)
    audit.assert_clean()

    # The auditor itself works: a known violation added to the page is reported.
    page.evaluate("""() => { const img = document.createElement("img"); img.src = "data:,";
                             document.querySelector("main").appendChild(img); }""")
    control = Audit()
    control.check(seen, "control page with an image without text alternative")
    assert any("axe image-alt" in p for p in control.problems), control.problems
    assert page.evaluate("axe.version") == AXE_VERSION
    # ... and so does the CSP listener: an inline script is refused and reported on the console.
    page.evaluate("""() => { const s = document.createElement("script"); s.textContent = "window.x = 1";
                             document.body.appendChild(s); }""")
    page.wait_for_timeout(200)
    assert seen.csp_violations(), seen.console


def test_states_reached_by_forms_and_htmx(visitor: Callable[[], Visitor], mailbox: Mailbox) -> None:
    """Form errors (full page and swapped by htmx), a saved and a failed toggle, the invitation page."""
    seen, audit = auditor(visitor), Audit()
    page = seen.page
    login(page, "rh@bellerive.example", DEMO_PASSWORD)
    page.get_by_role("navigation", name="Navigation principale").get_by_role("link", name="Gestion").click()
    form = page.locator("#agent-form")
    form.get_by_label("Prénom").fill("Inès")
    form.get_by_label("Adresse électronique professionnelle").fill("pas-une-adresse")
    form.get_by_role("button").click()
    expect(page.locator("#agent-form [aria-invalid=true]").first).to_be_visible()
    audit.check(seen, "agent form with errors (htmx)")

    email = "ines.audit@bellerive.example"
    page.locator("#agent-form").get_by_label(re.compile(r"^Nom\b")).fill("Audit")
    page.locator("#agent-form").get_by_label("Adresse électronique professionnelle").fill(email)
    with page.expect_navigation():
        page.locator("#agent-form").get_by_role("button").click()
    expect(page.locator(".notice")).to_be_visible()
    audit.check(seen, "agents grid with a confirmation")

    page.get_by_label("BIP pour Inès Audit", exact=True).check()
    expect(page.locator("tbody tr", has_text=email).locator(".saved")).to_be_visible()
    audit.check(seen, "agents grid after a saved toggle (htmx)")
    page.route("**/droits/**", lambda route: route.abort())
    page.get_by_label("BIP pour Inès Audit", exact=True).click()
    expect(page.locator("tbody tr", has_text=email).locator(".error")).to_be_visible()
    page.unroute("**/droits/**")
    audit.check(seen, "agents grid after a failed toggle")

    page.get_by_label("Rechercher un agent").fill("zzz-aucun")
    expect(page.locator("#agents-table")).to_contain_text("Aucun agent ne correspond")
    audit.check(seen, "agents grid with an empty search (htmx)")

    page.get_by_label("Rechercher un agent").fill("Audit")
    page.get_by_role("link", name=re.compile("Audit Inès")).click()
    page.get_by_label("Adresse électronique professionnelle").fill("")
    with page.expect_navigation():
        page.get_by_role("button", name="Enregistrer", exact=True).click()
    audit.check(seen, "agent page with errors")

    # The invitation, read from the real SMTP server, by a visitor who is not logged in.
    deadline = time.monotonic() + 15
    while not mailbox.to(email) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mailbox.to(email), "no invitation mail"
    invited = auditor(visitor)
    path = invitation_path(mailbox.to(email)[-1])
    invited.page.goto(path)
    audit.check(invited, "invitation")
    invited.page.get_by_label("Nouveau mot de passe").fill("court")
    with invited.page.expect_navigation():
        invited.page.get_by_label("Nouveau mot de passe").press("Enter")
    audit.check(invited, "invitation with errors")

    # A page this agent may not see: the 403 page.
    agent = auditor(visitor)
    login(agent.page, "agent@bellerive.example", DEMO_PASSWORD)
    employer_path = urlsplit(page.url).path.split("/agents")[0]
    response = agent.page.goto(employer_path + "/agents")
    assert response is not None and response.status == 403
    audit.check(agent, "403")

    for one in (seen, invited, agent):
        audit.console(one)
    audit.assert_clean()
