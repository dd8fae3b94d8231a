"""Login, wrong passwords, argon2 parameters and rehash, the password policy on the invitation page,
and invitations: signed, single-use, expiring, revoked on resend, only the agent sets the password."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update

from convergences.accounts.models import Account, Invitation
from convergences.app import create_app
from convergences.audit.models import AuditEvent
from convergences.db import transaction, utcnow
from convergences.runtime import Runtime
from convergences.security.models import LoginSession
from convergences.settings import PasswordSettings
from tests.conftest import settings_with
from tests.helpers import REFERENT, Browser, employer_id, execute, logged_in, membership_id, page_text, scalar
from tests.mailbox import Mailbox, invitation_path, text_body

LOGIN_FAILED = "Adresse électronique ou mot de passe incorrect."
LINK_INVALID = "Ce lien n'est plus valable"
HASH_PARAMS = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$")


async def password_hash(rt: Runtime, email: str) -> str | None:
    return await scalar(rt, select(Account.password_hash).where(Account.email == email))


def session_cookies(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [c for c in response.headers.get_list("set-cookie") if c.startswith("cvg_session=")]


async def invite(referent: Browser, rt: Runtime, mailbox: Mailbox, given: str = "Nora",
                 family: str = "Lefèvre") -> tuple[str, str]:
    """A référent of Bellerive creates an agent; return (email, invitation path from the real mail)."""
    email = f"{given.lower()}.{uuid.uuid4().hex[:8]}@bellerive.example"
    eid = await employer_id(rt)
    response = await referent.post(f"/employeurs/{eid}/agents",
                                   {"given_name": given, "family_name": family, "email": email})
    assert response.status_code == 303, page_text(response)
    mails = await mailbox.wait_for(email)
    return email, invitation_path(mails[-1])


# -- login ---------------------------------------------------------------------------------------

async def test_login_opens_a_session_and_journals_it(make_browser, runtime: Runtime) -> None:
    browser = await make_browser()
    response = await browser.post("/login", {"email": "Agent@Bellerive.example ", "password":
                                             "Convergences demo 2026 !", "next": "/services"})
    assert response.status_code == 303
    assert response.headers["location"] == "/services"
    cookies = session_cookies(response)
    assert len(cookies) == 1
    attributes = [part.strip().lower() for part in cookies[0].split(";")]
    assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes
    assert "secure" not in attributes  # plain http in tests: see test_sessions for https
    services = await browser.get("/services")
    assert services.status_code == 200 and "Julie" in services.text
    account_id = await scalar(runtime, select(Account.id).where(Account.email == "agent@bellerive.example"))
    assert await scalar(runtime, select(func.count()).select_from(LoginSession)
                        .where(LoginSession.account_id == account_id)) == 1
    event = await scalar(runtime, select(AuditEvent).where(AuditEvent.action == "account:login:success"))
    assert event.target_id == account_id and event.ip == "testclient"
    assert event.after["factor"] == "password" and event.after["amr"] == ["pwd"]
    assert await scalar(runtime, select(Account.last_login_at).where(Account.id == account_id)) is not None


async def test_login_follows_only_local_next(make_browser, runtime: Runtime) -> None:
    browser = await make_browser()
    response = await browser.post("/login", {"email": "agent@bellerive.example",
                                             "password": "Convergences demo 2026 !",
                                             "next": "https://evil.example/phish"})
    assert response.status_code == 303 and response.headers["location"] == "/"


async def test_wrong_password_is_refused_in_french_without_session(make_browser, runtime: Runtime) -> None:
    browser = await make_browser()
    before = await scalar(runtime, select(func.count()).select_from(LoginSession))
    response = await browser.post("/login", {"email": "agent@bellerive.example", "password": "pas le bon mot"})
    assert response.status_code == 401
    assert LOGIN_FAILED in response.text
    assert session_cookies(response) == []
    assert await scalar(runtime, select(func.count()).select_from(LoginSession)) == before
    assert (await browser.get("/services")).status_code == 303
    # An unknown address gets the very same answer (no account enumeration).
    unknown = await browser.post("/login", {"email": "personne@nulle-part.example", "password": "pas le bon mot"})
    assert unknown.status_code == 401 and LOGIN_FAILED in unknown.text
    failures = (await _all(runtime, select(AuditEvent).where(AuditEvent.action == "account:login:failure")))
    assert len(failures) == 2
    # The typed password never reaches the journal.
    assert all("pas le bon mot" not in repr((e.before, e.after, e.target_label)) for e in failures)


async def test_empty_form_is_422(make_browser, runtime: Runtime) -> None:
    browser = await make_browser()
    response = await browser.post("/login", {"email": "", "password": ""})
    assert response.status_code == 422
    assert "Saisissez votre adresse électronique et votre mot de passe." in response.text


async def _all(rt: Runtime, stmt):  # type: ignore[no-untyped-def]
    async with transaction(rt.maker) as db:
        return list((await db.scalars(stmt)).all())


# -- argon2 parameters ----------------------------------------------------------------------------

async def test_stored_hashes_are_argon2id_owasp_profile(runtime: Runtime) -> None:
    stored = await password_hash(runtime, "rh@bellerive.example")
    match = HASH_PARAMS.match(stored or "")
    assert match, stored
    m, t, p = map(int, match.groups())
    assert m >= 19456 and t >= 2 and p >= 1


async def test_rehash_on_login_when_parameters_change(settings, runtime: Runtime) -> None:
    email = "rh@bellerive.example"
    old = await password_hash(runtime, email)
    assert HASH_PARAMS.match(old).groups() == ("19456", "2", "1")  # type: ignore[union-attr]
    stronger = settings_with(settings, passwords=PasswordSettings(memory_kib=24 * 1024, time_cost=3))
    async with AsyncTestClient(app=create_app(stronger), base_url="http://testserver.local") as client:
        browser = Browser(client, own_cookies=True)
        await browser.login(email)
    new = await password_hash(runtime, email)
    assert new != old
    assert HASH_PARAMS.match(new).groups() == ("24576", "3", "1")  # type: ignore[union-attr]
    # The new hash still opens the door, and a wrong password still does not.
    async with AsyncTestClient(app=create_app(stronger), base_url="http://testserver.local") as client:
        browser = Browser(client, own_cookies=True)
        await browser.login(email)
        assert (await browser.post("/login", {"email": email, "password": "mauvais mot de passe"})
                ).status_code == 401
    assert await password_hash(runtime, email) == new


# -- invitations ----------------------------------------------------------------------------------

async def test_invitation_mail_link_sets_password_once(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    referent = await logged_in(make_browser, REFERENT)
    email, path = await invite(referent, runtime, mailbox)
    body = text_body(mailbox.to(email)[-1])
    assert "Commune de Bellerive-sur-Marne" in body and "http://testserver.local/invitation/" in body
    # The link carries a signed value, not the account id or email in clear.
    assert email not in path
    agent = await make_browser()
    page = await agent.get(path)
    assert page.status_code == 200 and "Nora" in page.text
    password = "lune pivoine escalier 42"
    response = await agent.post(path, {"password": password, "confirmation": password})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert (await password_hash(runtime, email) or "").startswith("$argon2id$")
    assert await scalar(runtime, select(Account.activated_at).where(Account.email == email)) is not None
    # Reused link: 410 on GET and on POST, and the password does not change.
    stored = await password_hash(runtime, email)
    again = await agent.get(path)
    assert again.status_code == 410 and LINK_INVALID in again.text
    other = "un autre mot de passe tout neuf"
    replay = await agent.post(path, {"password": other, "confirmation": other})
    assert replay.status_code == 410
    assert await password_hash(runtime, email) == stored
    await agent.login(email, password)


async def test_tampered_invitation_is_410(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    referent = await logged_in(make_browser, REFERENT)
    email, path = await invite(referent, runtime, mailbox)
    token = path.rsplit("/", 1)[1]
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    visitor = await make_browser()
    for bad in [flipped, token[:-1], token + "x", "nimporte-quoi", token.split(".")[0]]:
        response = await visitor.get(f"/invitation/{bad}")
        assert response.status_code == 410, bad
        assert LINK_INVALID in response.text and "Demandez à votre référent administrateur" in response.text
    password = "lune pivoine escalier 42"
    response = await visitor.post(f"/invitation/{flipped}", {"password": password, "confirmation": password})
    assert response.status_code == 410
    assert await password_hash(runtime, email) is None
    # The genuine link still works.
    assert (await visitor.get(path)).status_code == 200


async def test_expired_invitation_is_410(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    referent = await logged_in(make_browser, REFERENT)
    email, path = await invite(referent, runtime, mailbox)
    account_id = await scalar(runtime, select(Account.id).where(Account.email == email))
    await execute(runtime, update(Invitation).where(Invitation.account_id == account_id)
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
    visitor = await make_browser()
    response = await visitor.get(path)
    assert response.status_code == 410 and LINK_INVALID in response.text
    password = "lune pivoine escalier 42"
    assert (await visitor.post(path, {"password": password, "confirmation": password})).status_code == 410
    assert await password_hash(runtime, email) is None


async def test_resending_revokes_the_previous_link(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    referent = await logged_in(make_browser, REFERENT)
    email, first = await invite(referent, runtime, mailbox)
    eid = await employer_id(runtime)
    mid = await membership_id(runtime, email)
    response = await referent.post(f"/employeurs/{eid}/agents/{mid}/invitation")
    assert response.status_code == 303
    mails = await mailbox.wait_for(email, count=2)
    second = invitation_path(mails[-1])
    assert second != first
    visitor = await make_browser()
    assert (await visitor.get(first)).status_code == 410
    assert (await visitor.get(second)).status_code == 200
    account_id = await scalar(runtime, select(Account.id).where(Account.email == email))
    invitations = await _all(runtime, select(Invitation).where(Invitation.account_id == account_id)
                             .order_by(Invitation.id))
    assert len(invitations) == 2
    assert invitations[0].revoked_at is not None and invitations[1].revoked_at is None
    # Resending for an activated account is refused.
    active = await membership_id(runtime, "agent@bellerive.example")
    before = len(mailbox.to("agent@bellerive.example"))
    response = await referent.post(f"/employeurs/{eid}/agents/{active}/invitation", follow_redirects=True)
    assert "déjà activé" in response.text
    assert len(mailbox.to("agent@bellerive.example")) == before


async def test_invitation_password_policy(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    referent = await logged_in(make_browser, REFERENT)
    email, path = await invite(referent, runtime, mailbox, "Nora", "Lefèvre")
    agent = await make_browser()
    cases = {
        "court": "au moins 12 caractères",
        "password1234": "mots de passe courants ou divulgués",
        "nora adore les tulipes": "ne doit pas contenir votre nom",
        "les lefèvre de la rue": "ne doit pas contenir votre nom",
        "vive bellerive sur marne": "ne doit pas contenir votre nom",
    }
    for password, message in cases.items():
        response = await agent.post(path, {"password": password, "confirmation": password})
        assert response.status_code == 422, password
        assert message in response.text, password
    mismatch = await agent.post(path, {"password": "cinq chats lisent le journal",
                                       "confirmation": "cinq chats lisent le journaux"})
    assert mismatch.status_code == 422 and "ne sont pas identiques" in mismatch.text
    assert await password_hash(runtime, email) is None
    # A long passphrase (70 characters) is accepted and kept whole: its 64-character prefix does not log in.
    passphrase = "cinq chats gris lisent le journal du matin sous une pluie douce et fine"
    assert len(passphrase) >= 65
    response = await agent.post(path, {"password": passphrase, "confirmation": passphrase})
    assert response.status_code == 303
    truncated = await agent.post("/login", {"email": email, "password": passphrase[:64]})
    assert truncated.status_code == 401
    altered = passphrase[:64] + "X" + passphrase[65:]
    assert (await agent.post("/login", {"email": email, "password": altered})).status_code == 401
    await agent.login(email, passphrase)


async def test_nobody_but_the_agent_sets_a_password(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    referent = await logged_in(make_browser, REFERENT)
    email, _ = await invite(referent, runtime, mailbox)
    eid = await employer_id(runtime)
    mid = await membership_id(runtime, email)
    authority = await logged_in(make_browser, "maire@bellerive.example")
    pages = [(referent, f"/employeurs/{eid}"), (referent, f"/employeurs/{eid}/agents"),
             (referent, f"/employeurs/{eid}/agents/{mid}"), (referent, f"/employeurs/{eid}/agents/{mid}/supprimer"),
             (authority, f"/employeurs/{eid}/referents"), (authority, f"/employeurs/{eid}/agents")]
    for browser, url in pages:
        response = await browser.get(url)
        assert response.status_code == 200, url
        assert not re.search(r'name="(password|confirmation)"', response.text), url
        assert 'type="password"' not in response.text, url
    # Posting a password to the edit form is ignored.
    response = await referent.post(f"/employeurs/{eid}/agents/{mid}", {
        "given_name": "Nora", "family_name": "Lefèvre", "email": email,
        "password": "mot de passe impose par le referent", "confirmation": "mot de passe impose par le referent"})
    assert response.status_code == 303
    assert await password_hash(runtime, email) is None
    assert (await referent.post("/login", {"email": email, "password": "mot de passe impose par le referent"})
            ).status_code == 401
    # No route of the app takes someone else's password: the only password routes are the person's own
    # (their account page, their emailed reset link, the meter that stores nothing).
    app = referent.client.app
    paths = {route.path for route in app.routes}
    own = {"/compte/mot-de-passe", "/mot-de-passe/oublie", "/mot-de-passe/reinitialiser/{token:str}",
           "/mot-de-passe/evaluer"}
    assert not [p for p in paths if re.search(r"mot-de-passe|password", p) and p not in own]
