"""Credentials journeys in real Chromium, audited with axe-core like every page: forgotten password,
reset link with the live password meter (htmx, no inline script), password change, sessions page.

The person is a fresh agent invited for this test, so the demo accounts keep their password."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from convergences.seed import DEMO_PASSWORD
from tests.browser.conftest import Visitor
from tests.browser.live import login
from tests.browser.test_accessibility import Audit, auditor
from tests.mailbox import Mailbox, invitation_path, text_body

pytestmark = [pytest.mark.browser, pytest.mark.slow]
FIRST = "sept hérons pêchent dans la brume"
SECOND = "le vieux phare clignote sur la dune"


def wait_mail(mailbox: Mailbox, email: str, count: int) -> str:
    deadline = time.monotonic() + 15
    while len(mailbox.to(email)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(mailbox.to(email)) >= count, f"no mail n°{count} for {email}"
    return text_body(mailbox.to(email)[count - 1])


def invite_agent(visitor: Callable[[], Visitor], mailbox: Mailbox) -> str:
    """A référent invites a new agent, who sets FIRST as password; return the address."""
    referent = visitor()
    login(referent.page, "rh@bellerive.example", DEMO_PASSWORD)
    page = referent.page
    page.get_by_role("navigation", name="Navigation principale").get_by_role("link", name="Gestion").click()
    email = f"margot.{uuid.uuid4().hex[:8]}@bellerive.example"
    form = page.locator("#agent-form")
    form.get_by_label("Prénom").fill("Margot")
    form.get_by_label(re.compile(r"^Nom\b")).fill("Castel")
    form.get_by_label("Adresse électronique professionnelle").fill(email)
    with page.expect_navigation():
        form.get_by_role("button").click()
    wait_mail(mailbox, email, 1)
    invited = visitor()
    invited.page.goto(invitation_path(mailbox.to(email)[0]))
    invited.page.get_by_label("Nouveau mot de passe").fill(FIRST)
    invited.page.get_by_label("Confirmez le mot de passe").fill(FIRST)
    with invited.page.expect_navigation():
        invited.page.get_by_role("button", name="Enregistrer mon mot de passe").click()
    return email


def test_forgotten_password_reset_with_the_live_meter(visitor: Callable[[], Visitor], mailbox: Mailbox) -> None:
    email = invite_agent(visitor, mailbox)
    seen, audit = auditor(visitor), Audit()
    page = seen.page
    page.goto("/login")
    page.get_by_role("link", name="Mot de passe oublié ?").click()
    audit.check(seen, "forgotten password")
    page.get_by_label("Adresse électronique professionnelle").fill(email)
    with page.expect_navigation():
        page.get_by_role("button", name="Recevoir un lien").click()
    expect(page.locator(".notice")).to_contain_text("Si un compte actif correspond")
    audit.check(seen, "forgotten password, sent")
    body = wait_mail(mailbox, email, 2)
    link = re.search(r"https?://[^/\s]+(/mot-de-passe/reinitialiser/\S+)", body)
    assert link
    page.goto(link.group(1))
    audit.check(seen, "reset page")
    # As the person types, htmx swaps in the server's verdict (no inline script, CSP intact).
    page.get_by_label("Nouveau mot de passe").press_sequentially("Margot")
    expect(page.locator("#password-meter")).to_contain_text("Refusé")
    page.get_by_label("Nouveau mot de passe").fill(SECOND)
    page.get_by_label("Nouveau mot de passe").press("End")
    expect(page.locator("#password-meter")).to_contain_text("Très fort")
    audit.check(seen, "reset page with the meter")
    page.get_by_label("Confirmez le mot de passe").fill(SECOND + " !")
    with page.expect_navigation():
        page.get_by_role("button", name="Enregistrer mon mot de passe").click()
    expect(page.locator("#f-confirmation-error")).to_be_visible()
    audit.check(seen, "reset page with errors")
    page.get_by_label("Nouveau mot de passe").fill(SECOND)
    page.get_by_label("Confirmez le mot de passe").fill(SECOND)
    with page.expect_navigation():
        page.get_by_role("button", name="Enregistrer mon mot de passe").click()
    assert page.url.endswith("/login")
    login(page, email, SECOND)
    assert "/services" in page.url
    audit.console(seen)
    audit.assert_clean()


def test_account_pages_change_and_sessions(visitor: Callable[[], Visitor], mailbox: Mailbox) -> None:
    email = invite_agent(visitor, mailbox)
    other = visitor()
    login(other.page, email, FIRST)
    seen, audit = auditor(visitor), Audit()
    page = seen.page
    login(page, email, FIRST)
    page.get_by_role("link", name="Mon compte").click()
    audit.check(seen, "account hub")
    page.get_by_role("link", name="Mes sessions ouvertes").click()
    expect(page.locator("tbody tr")).to_have_count(2)
    audit.check(seen, "sessions")
    page.goto("/compte")
    page.get_by_role("link", name="Changer mon mot de passe").click()
    page.get_by_label("Mot de passe actuel").fill("pas le bon")
    page.get_by_label("Nouveau mot de passe").fill(SECOND)
    page.get_by_label("Confirmez le mot de passe").fill(SECOND)
    with page.expect_navigation():
        page.get_by_role("button", name="Enregistrer le nouveau mot de passe").click()
    expect(page.locator("#f-current-error")).to_be_visible()
    audit.check(seen, "password change with errors")
    page.get_by_label("Mot de passe actuel").fill(FIRST)
    page.get_by_label("Nouveau mot de passe").fill(SECOND)
    page.get_by_label("Confirmez le mot de passe").fill(SECOND)
    expect(page.get_by_label("Déconnecter mes autres sessions")).to_be_checked()
    with page.expect_navigation():
        page.get_by_role("button", name="Enregistrer le nouveau mot de passe").click()
    expect(page.locator(".notice")).to_contain_text("Vos autres sessions sont fermées")
    # The other browser was logged out.
    other.page.goto("/services")
    assert "/login" in other.page.url
    page.goto("/compte/adresse")
    audit.check(seen, "email change")
    for one in (seen, other):
        audit.console(one)
    audit.assert_clean()
