"""Password change and email change from « Mon compte »: step-up, current password, policy, the meter
(server-side verdict without JavaScript, htmx fragment with it), the other sessions, the notices by email."""

from __future__ import annotations

import asyncio
import html
import re
import uuid

from sqlalchemy import select

from convergences.accounts.models import Account
from convergences.runtime import Runtime
from convergences.seed import DEMO_PASSWORD
from tests.credentials_support import NEW_PASSWORD, age_authentication, events, link_path, new_mails, session_count
from tests.helpers import email_changed, logged_in, page_text, scalar
from tests.mailbox import Mailbox, text_body

AGENT = "agent@bellerive.example"
SHARED = "secretariat@coteaux.example"  # référent of the SIVOM and agent of Val-Fleuri
REAUTH = "/compte/reauthentification?next="


def change(current: str = DEMO_PASSWORD, new: str = NEW_PASSWORD, **extra: str) -> dict[str, str]:
    return {"current": current, "password": new, "confirmation": new, **extra}


async def test_pages_need_a_recent_authentication(make_browser, runtime: Runtime) -> None:
    agent = await logged_in(make_browser, AGENT)
    page = await agent.get("/compte/mot-de-passe")
    assert page.status_code == 200 and "Déconnecter mes autres sessions" in page.text
    assert re.search(r'name="end_others" value="1" checked', page.text)  # checked by default
    await age_authentication(runtime, AGENT)
    for path in ("/compte/mot-de-passe", "/compte/adresse"):
        response = await agent.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == REAUTH + path.replace("/", "%2F")
    response = await agent.post("/compte/mot-de-passe", change(end_others="1"))
    assert response.status_code == 303 and response.headers["location"].startswith(REAUTH)
    response = await agent.post("/compte/adresse", {"email": "julie.moreau@bellerive.example"})
    assert response.status_code == 303 and response.headers["location"].startswith(REAUTH)
    # Nothing changed.
    await (await make_browser()).login(AGENT)
    assert await scalar(runtime, select(Account.id).where(Account.email == "julie.moreau@bellerive.example")) is None


async def test_change_needs_the_current_password_and_the_policy(make_browser, runtime: Runtime) -> None:
    agent = await logged_in(make_browser, AGENT)
    wrong = await agent.post("/compte/mot-de-passe", change(current="pas le bon mot de passe"))
    assert wrong.status_code == 422 and "Le mot de passe actuel est incorrect." in page_text(wrong)
    weak = await agent.post("/compte/mot-de-passe", change(new="Julie Moreau 1234"))
    assert weak.status_code == 422 and "ne doit pas contenir votre nom" in wrong.text + weak.text
    assert "Robustesse : Refusé" in weak.text
    same = await agent.post("/compte/mot-de-passe", change(new=DEMO_PASSWORD))
    assert same.status_code == 422 and "différent de l'actuel" in html.unescape(same.text)
    await (await make_browser()).login(AGENT)  # still the old password


async def test_change_ends_other_sessions_by_default_and_notifies(make_browser, runtime: Runtime,
                                                                  mailbox: Mailbox) -> None:
    other = await logged_in(make_browser, AGENT)
    agent = await logged_in(make_browser, AGENT)
    before = len(mailbox.to(AGENT))
    response = await agent.post("/compte/mot-de-passe", change(end_others="1"))
    assert response.status_code == 303 and response.headers["location"] == "/compte"
    assert (await agent.get("/compte")).status_code == 200  # this session stays
    assert (await other.get("/services")).status_code in (302, 303)  # the others end
    assert await session_count(runtime, AGENT) == 1
    notice = (await new_mails(mailbox, AGENT, before))[0]
    assert notice["Subject"] == "Votre mot de passe a été modifié"
    event = (await events(runtime, "account:password:change"))[-1]
    assert event.after == {"other_sessions_ended": True}
    await (await make_browser()).login(AGENT, NEW_PASSWORD)


async def test_unticking_the_box_keeps_the_other_sessions(make_browser, runtime: Runtime) -> None:
    other = await logged_in(make_browser, AGENT)
    agent = await logged_in(make_browser, AGENT)
    assert (await agent.post("/compte/mot-de-passe", change())).status_code == 303
    assert (await other.get("/services")).status_code == 200


async def test_long_passwords_and_paste_are_welcome(make_browser, runtime: Runtime) -> None:
    agent = await logged_in(make_browser, AGENT)
    page = await agent.get("/compte/mot-de-passe")
    assert "onpaste" not in page.text and 'maxlength="1024"' in page.text
    long = "Les sanglots longs des violons de l'automne blessent mon coeur d'une langueur monotone" * 2
    assert len(long) > 128
    assert (await agent.post("/compte/mot-de-passe", change(new=long))).status_code == 303
    # No truncation: the same text without its last character is refused.
    refused = await (await make_browser()).post("/login", {"email": AGENT, "password": long[:-1]})
    assert refused.status_code == 401
    await (await make_browser()).login(AGENT, long)


async def test_meter_fragment_as_the_person_types(make_browser) -> None:
    agent = await logged_in(make_browser, AGENT)
    page = await agent.get("/compte/mot-de-passe")
    assert 'hx-post="/mot-de-passe/evaluer"' in page.text and "delay:400ms" in page.text
    assert "<script>" not in page.text  # no inline script (CSP)
    short = await agent.post("/mot-de-passe/evaluer", {"password": "abc"}, htmx=True)
    assert short.status_code == 200 and short.text.lstrip().startswith('<div id="password-meter"')
    assert "Robustesse : Refusé" in short.text and "au moins 12 caractères" in short.text
    named = await agent.post("/mot-de-passe/evaluer", {"password": "Moreau et ses chats"}, htmx=True)
    assert "ne doit pas contenir votre nom" in named.text
    good = await agent.post("/mot-de-passe/evaluer", {"password": NEW_PASSWORD}, htmx=True)
    assert "Robustesse : Très fort" in good.text
    # Anonymous, with a reset or invitation token of someone else's: the token decides the context;
    # without one, only length and the lists apply.
    visitor = await make_browser()
    anon = await visitor.post("/mot-de-passe/evaluer", {"password": "Moreau et ses chats"}, htmx=True)
    assert "Robustesse : Refusé" not in anon.text


async def test_email_change_is_confirmed_from_the_new_address(make_browser, runtime: Runtime,
                                                              mailbox: Mailbox) -> None:
    agent = await logged_in(make_browser, AGENT)
    new = f"julie.moreau.{uuid.uuid4().hex[:8]}@bellerive.example"  # unique: the mailbox outlives the test
    response = await agent.post("/compte/adresse", {"email": new})
    assert response.status_code == 303
    # Nothing changes before the confirmation.
    assert await scalar(runtime, select(Account.email).where(Account.email == AGENT)) == AGENT
    confirm = (await mailbox.wait_for(new))[-1]
    assert confirm["Subject"] == "Confirmez votre nouvelle adresse électronique"
    path = link_path(confirm, "/compte/adresse/confirmer/")
    visitor = await make_browser()
    page = await visitor.get(path)
    assert page.status_code == 200 and new in page.text
    assert await scalar(runtime, select(Account.email).where(Account.email == AGENT)) == AGENT  # GET changes nothing
    before_old = len(mailbox.to(AGENT))
    done = await visitor.post(path)
    assert done.status_code == 303
    assert await scalar(runtime, select(Account.id).where(Account.email == new)) is not None
    notice = (await new_mails(mailbox, AGENT, before_old))[0]
    assert "n'est plus agent@bellerive.example" in text_body(notice)
    event = (await events(runtime, "account:email:change"))[-1]
    assert event.before == {"email": AGENT} and event.after == {"email": new}
    assert (await visitor.post(path)).status_code == 410  # single use
    await (await make_browser()).login(new)


async def test_email_of_another_account_is_refused_without_saying_whose(make_browser, runtime: Runtime,
                                                                        mailbox: Mailbox) -> None:
    agent = await logged_in(make_browser, AGENT)
    sent = len(mailbox.messages)
    taken = await agent.post("/compte/adresse", {"email": "rh@bellerive.example"})
    assert taken.status_code == 422
    assert "Cette adresse ne peut pas être utilisée pour votre compte" in taken.text
    assert "Sophie" not in taken.text and "Bellerive" not in page_text(taken).split("Changer mon adresse")[-1]
    invalid = await agent.post("/compte/adresse", {"email": "pas une adresse"})
    assert invalid.status_code == 422 and "adresse électronique valide" in invalid.text
    assert 'aria-describedby="f-email-error"' in invalid.text
    await asyncio.sleep(0.3)
    assert len(mailbox.messages) == sent


async def test_a_shared_account_changes_its_own_email(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    person = await logged_in(make_browser, SHARED)
    new = f"nadia.roussel.{uuid.uuid4().hex[:8]}@coteaux.example"
    assert (await person.post("/compte/adresse", {"email": new})).status_code == 303
    path = link_path((await mailbox.wait_for(new))[-1], "/compte/adresse/confirmer/")
    assert (await person.post(path)).status_code == 303
    email_changed(person.client, SHARED, new)  # a shared secretary is a référent: her TOTP follows her
    await (await make_browser()).login(new)


async def test_invitation_page_has_the_meter_with_and_without_javascript(make_browser, runtime: Runtime,
                                                                         mailbox: Mailbox) -> None:
    from tests.helpers import REFERENT, employer_id
    from tests.mailbox import invitation_path

    referent = await logged_in(make_browser, REFERENT)
    email = f"lea.meter.{uuid.uuid4().hex[:8]}@bellerive.example"
    await referent.post(f"/employeurs/{await employer_id(runtime)}/agents",
                        {"given_name": "Léa", "family_name": "Girard", "email": email})
    path = invitation_path((await mailbox.wait_for(email))[-1])
    visitor = await make_browser()
    page = await visitor.get(path)
    assert 'hx-post="/mot-de-passe/evaluer"' in page.text and 'hx-params="password,token"' in page.text
    # Without JavaScript: the refused form comes back with the verdict and its reasons.
    refused = await visitor.post(path, {"password": "Léa Girard 2026", "confirmation": "Léa Girard 2026"})
    assert refused.status_code == 422 and "Robustesse : Refusé" in refused.text
    # With htmx: the invitation token gives the meter the person's own words.
    token = path.rsplit("/", 1)[1]
    fragment = await visitor.post("/mot-de-passe/evaluer", {"password": "girard pour toujours", "token": token},
                                  htmx=True)
    assert "ne doit pas contenir votre nom" in fragment.text


async def test_guessing_the_current_password_is_throttled(make_browser, runtime: Runtime) -> None:
    agent = await logged_in(make_browser, AGENT)
    for _ in range(runtime.settings.throttle.account_free_failures + 1):
        response = await agent.post("/compte/mot-de-passe", change(current="une mauvaise supposition"))
        assert response.status_code == 422
    # Now even the right current password waits: the form is no way around the login throttle.
    blocked = await agent.post("/compte/mot-de-passe", change())
    assert blocked.status_code == 422 and "Trop de tentatives" in blocked.text
    # It is the login's own counter for this account and address: the login form waits too…
    assert (await (await make_browser()).post("/login", {"email": AGENT, "password": DEMO_PASSWORD})
            ).status_code == 429
    # …while from another address the unchanged password still opens the account.
    from convergences.accounts.services import AuthService

    assert (await AuthService(runtime).login(AGENT, DEMO_PASSWORD, "203.0.113.9", "poste")).ok
