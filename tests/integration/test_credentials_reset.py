"""Self-service password reset ("Mot de passe oublié ?") and the reset link a référent sends.

Signed, single-use, 15-minute link; the same answer whether or not the address exists; the reset only
sets the password (no session is opened, every session and application session ends); administrators send
a link, never a password, within their employer and their role."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import select, update

from convergences.accounts import links
from convergences.accounts.models import Invitation
from convergences.db import utcnow
from convergences.runtime import Runtime
from convergences.seed import DEMO_PASSWORD
from tests.credentials_support import NEW_PASSWORD, events, link_path, new_mails, session_count
from tests.helpers import (
    REFERENT,
    SIVOM,
    Browser,
    employer_id,
    execute,
    logged_in,
    membership_id,
    page_text,
    rows,
)
from tests.integration.test_backchannel import receiver
from tests.mailbox import Mailbox, invitation_path, text_body

__all__ = ["receiver"]  # the fixture, imported for these tests

AGENT = "agent@bellerive.example"
RESET = "/mot-de-passe/reinitialiser/"


async def forgot(browser: Browser, email: str):  # type: ignore[no-untyped-def]
    return await browser.post("/mot-de-passe/oublie", {"email": email})


async def reset_link(browser: Browser, mailbox: Mailbox, email: str) -> str:
    before = len(mailbox.to(email))
    response = await forgot(browser, email)
    assert response.status_code == 200, page_text(response)
    return link_path((await new_mails(mailbox, email, before))[0], RESET)


async def test_login_page_links_to_the_forgotten_password_page(make_browser) -> None:
    browser = await make_browser()
    page = await browser.get("/login")
    assert 'href="/mot-de-passe/oublie"' in page.text and "Mot de passe oublié ?" in page.text
    assert (await browser.get("/mot-de-passe/oublie")).status_code == 200


async def test_same_answer_whether_or_not_the_address_exists(make_browser, runtime: Runtime,
                                                             mailbox: Mailbox) -> None:
    browser = await make_browser()
    known = await forgot(browser, AGENT)
    unknown = await forgot(browser, "personne.inconnue@bellerive.example")
    assert known.status_code == unknown.status_code == 200
    assert page_text(known) == page_text(unknown)
    assert "Si un compte actif correspond à cette adresse" in page_text(known)
    await mailbox.wait_for(AGENT)
    await asyncio.sleep(0.3)
    assert not mailbox.to("personne.inconnue@bellerive.example")
    # Nothing in the database betrays the unknown address either.
    assert not [e for e in await events(runtime, "account:password:reset_request") if "inconnue" in e.target_label]


async def test_reset_sets_the_password_ends_sessions_and_opens_none(make_browser, runtime: Runtime,
                                                                    mailbox: Mailbox) -> None:
    elsewhere = await logged_in(make_browser, AGENT)
    assert await session_count(runtime, AGENT) == 1
    visitor = await make_browser()
    path = await reset_link(visitor, mailbox, AGENT)
    page = await visitor.get(path)
    assert page.status_code == 200 and 'type="password"' in page.text
    before = len(mailbox.to(AGENT))
    done = await visitor.post(path, {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD})
    assert done.status_code == 303 and done.headers["location"] == "/login"
    # No login session is created by the reset (the normal login, with any second factor, follows).
    assert not [c for c in done.headers.get_list("set-cookie") if c.startswith("cvg_session=")]
    assert await session_count(runtime, AGENT) == 0
    assert (await elsewhere.get("/services")).status_code in (302, 303)
    # The old password no longer works, the new one does.
    assert (await (await make_browser()).post("/login", {"email": AGENT, "password": DEMO_PASSWORD})
            ).status_code == 401
    await (await make_browser()).login(AGENT, NEW_PASSWORD)
    notice = (await new_mails(mailbox, AGENT, before))[0]
    assert notice["Subject"] == "Votre mot de passe a été modifié"
    assert len(await events(runtime, "account:password:reset")) == 1
    # Single use.
    again = await visitor.post(path, {"password": NEW_PASSWORD + " bis", "confirmation": NEW_PASSWORD + " bis"})
    assert again.status_code == 410
    assert (await visitor.get(path)).status_code == 410


async def test_reset_link_applies_the_policy_and_changes_nothing_on_error(make_browser, runtime: Runtime,
                                                                          mailbox: Mailbox) -> None:
    visitor = await make_browser()
    path = await reset_link(visitor, mailbox, AGENT)
    for password, message in [("court", "au moins 12 caractères"),
                              ("password1234", "mots de passe courants"),
                              ("Commune de Bellerive 2026", "nom de votre employeur")]:
        response = await visitor.post(path, {"password": password, "confirmation": password})
        assert response.status_code == 422, password
        assert message in page_text(response), password
        # The no-JavaScript meter: the page re-renders with a French verdict.
        assert "Robustesse : Refusé" in page_text(response)
    mismatch = await visitor.post(path, {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD + "!"})
    assert mismatch.status_code == 422 and "ne sont pas identiques" in page_text(mismatch)
    # Still the old password, still a usable link.
    await (await make_browser()).login(AGENT)
    assert (await visitor.get(path)).status_code == 200


async def test_reset_link_expires_after_15_minutes(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    visitor = await make_browser()
    path = await reset_link(visitor, mailbox, AGENT)
    link = (await rows(runtime, select(Invitation).where(Invitation.purpose == links.RESET)))[-1]
    assert timedelta(minutes=14) < link.expires_at - link.created_at <= timedelta(minutes=15)
    await execute(runtime, update(Invitation).where(Invitation.id == link.id)
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert (await visitor.get(path)).status_code == 410
    response = await visitor.post(path, {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD})
    assert response.status_code == 410
    await (await make_browser()).login(AGENT)


async def test_links_of_one_purpose_do_not_open_another(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    email = f"ines.reset.{uuid.uuid4().hex[:8]}@bellerive.example"  # unique: the mailbox outlives the test
    await referent.post(f"/employeurs/{eid}/agents", {"given_name": "Inès", "family_name": "Roy", "email": email})
    invitation = invitation_path((await mailbox.wait_for(email))[-1])
    token = invitation.rsplit("/", 1)[1]
    assert (await referent.get(RESET + token)).status_code == 410
    assert (await referent.get("/compte/adresse/confirmer/" + token)).status_code == 410


async def test_no_mail_for_suspended_or_invited_accounts_and_at_most_three_per_hour(
        make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    browser = await make_browser()
    before = len(mailbox.to(AGENT))
    for _ in range(5):
        assert (await forgot(browser, AGENT)).status_code == 200
    await mailbox.wait_for(AGENT, before + 3)
    await asyncio.sleep(0.5)
    assert len(mailbox.to(AGENT)) == before + 3
    # Each new link revokes the previous one: only the last is live.
    live = [i for i in await rows(runtime, select(Invitation).where(Invitation.purpose == links.RESET))
            if i.revoked_at is None]
    assert len(live) == 1


# -- administrators send a link, never a password -------------------------------------------------

async def test_referent_sends_a_reset_link_to_an_agent(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    referent = await logged_in(make_browser, REFERENT)
    eid, mid = await employer_id(runtime), await membership_id(runtime, AGENT)
    page = await referent.get(f"/employeurs/{eid}/agents/{mid}")
    assert "Envoyer un lien de réinitialisation du mot de passe" in page.text
    before = len(mailbox.to(AGENT))
    response = await referent.post(f"/employeurs/{eid}/agents/{mid}/reinitialisation")
    assert response.status_code == 303
    mail = (await new_mails(mailbox, AGENT, before))[0]
    assert "vous a envoyé un lien" in text_body(mail)
    event = (await events(runtime, "account:password:reset_send"))[-1]
    assert event.employer_id == eid and event.target_id == mid and event.actor_label.startswith("Sophie")
    # The référent never learns the password: the agent sets it through the link.
    agent = await make_browser()
    path = link_path(mail, RESET)
    assert (await agent.post(path, {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD})).status_code == 303
    await agent.login(AGENT, NEW_PASSWORD)


async def test_referent_cannot_reset_another_employer_or_a_referent(make_browser, runtime: Runtime,
                                                                    mailbox: Mailbox) -> None:
    referent = await logged_in(make_browser, REFERENT)
    bellerive, sivom = await employer_id(runtime), await employer_id(runtime, SIVOM)
    other = await membership_id(runtime, "technique@coteaux.example", SIVOM)
    colleague = await membership_id(runtime, "paie@bellerive.example")
    sent = len(mailbox.messages)
    assert (await referent.post(f"/employeurs/{sivom}/agents/{other}/reinitialisation")).status_code == 403
    assert (await referent.post(f"/employeurs/{bellerive}/agents/{other}/reinitialisation")).status_code == 404
    # A fellow référent is helped by CIG staff, not by a peer.
    assert (await referent.post(f"/employeurs/{bellerive}/agents/{colleague}/reinitialisation")).status_code == 403
    correspondent = await logged_in(make_browser, "c.bernard@cig-demo.fr")
    assert (await correspondent.post(f"/employeurs/{bellerive}/agents/{colleague}/reinitialisation")
            ).status_code == 303
    await mailbox.wait_for("paie@bellerive.example")
    await asyncio.sleep(0.3)
    assert [str(m["To"]) for m in mailbox.messages[sent:]] == ["paie@bellerive.example"]


async def test_reset_ends_the_application_sessions_too(make_browser, runtime: Runtime, mailbox: Mailbox,
                                                       receiver) -> None:  # type: ignore[no-untyped-def]
    from convergences.oidc.services import register_client
    from tests.integration.test_backchannel import _sign_in_to_application, _wait_delivered

    client_id, secret = await register_client(runtime, application_slug="bip", redirect_uris=["https://bip.test/cb"],
                                              backchannel_logout_uri=receiver.uri)
    await _sign_in_to_application(await make_browser(), client_id, secret, AGENT)
    visitor = await make_browser()
    path = await reset_link(visitor, mailbox, AGENT)
    assert (await visitor.post(path, {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD})).status_code == 303
    await _wait_delivered(runtime, 1)
    assert len(receiver.received) == 1
