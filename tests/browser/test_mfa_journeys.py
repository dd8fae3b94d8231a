"""Second factor in real Chromium: enrol a TOTP app and log in with it; register a passkey through a
virtual authenticator (DevTools WebAuthn domain) and log in with it, without password and as a second
factor. The new pages are audited with axe-core like the rest of the crawl."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from convergences.seed import DEMO_PASSWORD
from tests.browser.conftest import Visitor
from tests.browser.live import LiveServer, login, origin
from tests.browser.test_accessibility import Audit, auditor
from tests.helpers import remember_secret, scratch_directory, totp_code_blocking
from tests.mailbox import Mailbox

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOTP_AGENT = "technique@coteaux.example"  # not used by the other browser tests
PASSKEY_AGENT = "accueil@ccas-bellerive.example"


def logout(page: Page) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name="Se déconnecter").click()
    expect(page).to_have_url(re.compile(r"/login$"))


def test_totp_enrolment_then_login_with_the_code(visitor: Callable[[], Visitor]) -> None:
    seen, audit = auditor(visitor), Audit()
    page = seen.page
    login(page, TOTP_AGENT, DEMO_PASSWORD)
    page.goto("/compte/double-authentification")
    audit.check(seen, "factors (none yet)")
    page.get_by_role("link", name="Ajouter une application d'authentification").click()
    expect(page.locator("svg").first).to_be_visible()
    audit.check(seen, "TOTP enrolment")
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    remember_secret(origin(page), TOTP_AGENT, secret)
    page.get_by_label("Nom de l'appareil").fill("Mon téléphone")
    page.get_by_label("Code à 6 chiffres").fill("000000")
    page.get_by_role("button", name="Activer").click()
    expect(page.locator("#f-code-error")).to_be_visible()
    audit.check(seen, "TOTP enrolment with an error")
    page.get_by_label("Code à 6 chiffres").fill(totp_code_blocking(origin(page), TOTP_AGENT))
    page.get_by_role("button", name="Activer").click()
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    audit.check(seen, "recovery codes")
    page.get_by_role("link", name="Continuer").click()
    expect(page.get_by_role("cell", name="Mon téléphone", exact=True)).to_be_visible()
    logout(page)

    # Next login: the password, then the code of the app (computed here as the app would).
    page.get_by_label("Adresse électronique professionnelle").fill(TOTP_AGENT)
    page.get_by_label("Mot de passe").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Se connecter", exact=True).click()
    expect(page).to_have_url(re.compile(r"/login/second-facteur"))
    audit.check(seen, "second factor")
    page.get_by_label("Code de vérification").fill(pyotp.TOTP(secret).generate_otp(0))  # a wrong code
    page.get_by_role("button", name="Valider").click()
    expect(page.locator("#code-error")).to_be_visible()
    audit.check(seen, "second factor with an error")
    page.get_by_label("Code de vérification").fill(totp_code_blocking(origin(page), TOTP_AGENT))
    page.get_by_role("button", name="Valider").click()
    expect(page).to_have_url(re.compile(r"/services$"))
    page.goto("/compte/historique")
    expect(page.get_by_role("cell", name="Mot de passe + application d'authentification").first).to_be_visible()
    audit.check(seen, "login history")
    page.goto("/compte/reauthentification?next=/compte/double-authentification")
    audit.check(seen, "re-authentication")
    audit.console(seen)
    audit.assert_clean()


def test_employer_policy_page_is_accessible(visitor: Callable[[], Visitor]) -> None:
    seen, audit = auditor(visitor), Audit()
    login(seen.page, "rh@bellerive.example", DEMO_PASSWORD)
    seen.page.goto("/")
    seen.page.get_by_role("link", name=re.compile("^Gestion")).first.click()
    employer = re.search(r"/employeurs/(\d+)", seen.page.url).group(1)  # type: ignore[union-attr]
    seen.page.goto(f"/employeurs/{employer}/double-authentification")
    audit.check(seen, "employer 2FA policy")
    audit.console(seen)
    audit.assert_clean()


# -- passkeys: WebAuthn needs a secure context whose host is a domain (http://localhost), not an IP ----------

class LocalhostServer(LiveServer):
    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"


@pytest.fixture(scope="module")
def localhost_server(mailbox: Mailbox) -> Iterator[LiveServer]:
    with scratch_directory("convergences-webauthn-") as directory:
        server = LocalhostServer(directory, smtp_port=mailbox.port).start()
        try:
            yield server
        finally:
            server.stop()


def test_passkey_registration_then_passwordless_and_second_factor_login(chromium: Browser,
                                                                        localhost_server: LiveServer) -> None:
    context = chromium.new_context(base_url=localhost_server.url, locale="fr-FR")
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
        cdp = context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
            "isUserVerified": True, "automaticPresenceSimulation": True}})["authenticatorId"]

        login(page, PASSKEY_AGENT, DEMO_PASSWORD)
        page.goto("/compte/double-authentification")
        page.get_by_label("Nom de la clé d'accès").fill("Ordinateur du bureau")
        page.get_by_role("button", name="Ajouter une clé d'accès").click()
        expect(page.locator("#passkey-codes li")).to_have_count(10)
        credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
        assert len(credentials) == 1 and credentials[0]["isResidentCredential"]
        page.goto("/compte/double-authentification")
        expect(page.get_by_role("cell", name="Ordinateur du bureau", exact=True)).to_be_visible()
        logout(page)

        # Passwordless: the discoverable credential names the account.
        page.get_by_role("button", name="Se connecter avec une clé d'accès").click()
        expect(page).to_have_url(re.compile(r"/services$"))
        expect(page.get_by_text("Léa Dumas").first).to_be_visible()
        logout(page)

        # As the second factor after the password (the account has a factor now).
        page.get_by_label("Adresse électronique professionnelle").fill(PASSKEY_AGENT)
        page.get_by_label("Mot de passe").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="Se connecter", exact=True).click()
        expect(page).to_have_url(re.compile(r"/login/second-facteur"))
        page.get_by_role("button", name="Utiliser ma clé d'accès").click()
        expect(page).to_have_url(re.compile(r"/services$"))
        page.goto("/compte/historique")
        expect(page.get_by_role("cell", name="Clé d'accès (sans mot de passe)").first).to_be_visible()
        expect(page.get_by_role("cell", name="Mot de passe + clé d'accès").first).to_be_visible()
        assert not errors, errors
    finally:
        context.close()
