"""The core loop in real Chromium, driven with the keyboard: a référent creates an agent and grants a
right on the htmx grid; the agent accepts the invitation read from the real SMTP server, chooses a
password, logs in and sees the application's tile."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from convergences.seed import DEMO_PASSWORD
from tests.browser.conftest import Visitor
from tests.browser.live import LiveServer, login
from tests.mailbox import Mailbox, invitation_path

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REFERENT = "rh@bellerive.example"
AGENT_EMAIL = "nora.lefevre@bellerive.example"
AGENT_PASSWORD = "lune pivoine escalier 42"
SAVE_FAILED = "La modification n'a pas pu être enregistrée. Réessayez dans un instant."


def mark_document(page: Page) -> None:
    """A flag on window: it survives htmx swaps and vanishes on any full page load."""
    page.evaluate("window.__sameDocument = true")


def same_document(page: Page) -> bool:
    return bool(page.evaluate("window.__sameDocument === true"))


def wait_for_mail(mailbox: Mailbox, recipient: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = mailbox.to(recipient)
        if found:
            return invitation_path(found[-1])
        time.sleep(0.1)
    raise AssertionError(f"no invitation mail for {recipient} within {timeout}s")


def test_referent_invites_agent_who_logs_in_and_sees_tile(visitor: Callable[[], Visitor], live_server: LiveServer,
                                                          mailbox: Mailbox) -> None:
    referent = visitor()
    page = referent.page

    # Log in with the keyboard; a référent lands on "Mes services" and reaches the grid from the nav.
    login(page, REFERENT, DEMO_PASSWORD)
    expect(page).to_have_url(re.compile(r"/services$"))
    gestion = page.get_by_role("navigation", name="Navigation principale").get_by_role("link", name="Gestion")
    gestion.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/employeurs/\d+/agents$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Agents et droits d'accès")
    grid_url = page.url

    # An invalid address: htmx swaps the form in place with the error, no page load.
    mark_document(page)
    form = page.locator("#agent-form")
    form.get_by_label("Prénom").fill("Nora")
    form.get_by_label(re.compile(r"^Nom\b")).fill("Lefèvre")
    form.get_by_label("Adresse électronique professionnelle").fill("pas-une-adresse")
    form.get_by_label("Adresse électronique professionnelle").press("Enter")
    email_input = page.locator("#agent-form").get_by_label("Adresse électronique professionnelle")
    expect(email_input).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-email-error")).to_be_visible()
    assert same_document(page), "the form error should be swapped in by htmx, not by a page load"
    expect(page.locator("#agent-form").get_by_label("Prénom")).to_have_value("Nora")

    # The corrected form: htmx follows HX-Redirect to the grid, which shows the confirmation.
    email_input.fill(AGENT_EMAIL)
    with page.expect_navigation():
        email_input.press("Enter")
    expect(page.locator(".notice[role=status]")).to_contain_text("Le compte de Nora Lefèvre est créé")
    row = page.locator("tbody tr", has_text=AGENT_EMAIL)
    expect(row).to_have_count(1)
    expect(row.locator(".status")).to_have_text("Invité")

    # Grant BIP with the keyboard (Space on the checkbox): the row is swapped and says "Enregistré".
    mark_document(page)
    bip = page.get_by_label("BIP pour Nora Lefèvre", exact=True)
    expect(bip).not_to_be_checked()
    bip.focus()
    page.keyboard.press("Space")
    expect(row.locator(".saved[role=status]")).to_have_text("Enregistré")
    expect(bip).to_be_checked()
    assert same_document(page)
    # htmx keeps the focus on the control (same id in the new row): keyboard users stay in place.
    assert page.evaluate("document.activeElement && document.activeElement.id") == bip.get_attribute("id")
    page.reload()
    expect(bip).to_be_checked()

    # A toggle that cannot reach the server: the checkbox goes back and the grid says so in French.
    mark_document(page)
    page.route("**/droits/**", lambda route: route.abort())
    bip.focus()
    page.keyboard.press("Space")
    cell_error = row.locator("td.grant .error").filter(has_text=SAVE_FAILED)
    expect(cell_error).to_be_visible()
    expect(page.locator("#grid-status")).to_have_text(SAVE_FAILED)
    expect(bip).to_be_checked()
    assert same_document(page)
    page.unroute("**/droits/**")
    page.reload()
    expect(bip).to_be_checked()

    # Active search: typing filters the grid through htmx, the URL follows, the page is not reloaded.
    mark_document(page)
    search = page.get_by_label("Rechercher un agent")
    search.focus()
    page.keyboard.type("Nora")
    expect(page.locator("#agents-table")).to_contain_text("1 agent correspondant à « Nora »")
    expect(page.locator("#agents-table tbody tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"[?&]q=Nora"))
    assert same_document(page), "the active search must not reload the page"
    search.fill("")
    expect(page.locator("#agents-table tbody tr", has_text="Julie")).to_have_count(1)
    assert same_document(page)
    assert page.url.split("?")[0] == grid_url

    # Log out.
    logout = page.get_by_role("button", name="Se déconnecter")
    logout.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator(".notice")).to_have_text("Vous êtes déconnecté(e).")

    # The agent opens the link of the real invitation mail in another browser.
    path = wait_for_mail(mailbox, AGENT_EMAIL)
    agent = visitor()
    page = agent.page
    page.goto(path)
    expect(page.get_by_role("heading", level=1)).to_have_text("Bienvenue Nora Lefèvre")
    password = page.get_by_label("Nouveau mot de passe")
    confirmation = page.get_by_label("Confirmez le mot de passe")
    # Too short first: the error is tied to the field.
    password.fill("court")
    confirmation.fill("court")
    with page.expect_navigation():
        confirmation.press("Enter")
    expect(page.get_by_label("Nouveau mot de passe")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Nouveau mot de passe").fill(AGENT_PASSWORD)
    page.get_by_label("Confirmez le mot de passe").fill(AGENT_PASSWORD)
    with page.expect_navigation():
        page.get_by_label("Confirmez le mot de passe").press("Enter")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator(".notice")).to_contain_text("Votre mot de passe est enregistré")

    login(page, AGENT_EMAIL, AGENT_PASSWORD)
    expect(page).to_have_url(re.compile(r"/services$"))
    expect(page.get_by_role("heading", name="Commune de Bellerive-sur-Marne")).to_be_visible()
    tile = page.locator('.tile a[data-app="bip"]')
    expect(tile).to_be_visible()
    expect(tile).to_contain_text("BIP")
    expect(page.locator(".tile a")).to_have_count(1)

    # The link is single use.
    page.goto(path)
    expect(page.get_by_role("heading", level=1)).to_have_text("Ce lien n'est plus valable")

    for seen in (referent, agent):
        assert not seen.csp_violations(), seen.csp_violations()
        assert not seen.errors, seen.errors
