"""Second factor: the two-step login, replay, recovery codes, the policy per role and per employer,
forced enrolment, throttling of codes, amr in ID tokens, reset within the authz scope, step-up."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from sqlalchemy import delete, func, select, update

from convergences.accounts.models import Account
from convergences.audit.models import AuditEvent
from convergences.db import utcnow
from convergences.employers.models import Employer
from convergences.mfa.models import RecoveryCode, SecondFactor
from convergences.mfa.totp import step_at
from convergences.runtime import Runtime
from convergences.security.models import LoginSession
from convergences.seed import DEMO_PASSWORD, demo_totp_secret
from tests.helpers import (
    REFERENT,
    SIVOM,
    Browser,
    account_id,
    employer_id,
    execute,
    logged_in,
    membership_id,
    page_text,
    rows,
    scalar,
    totp_code,
    use_step,
)
from tests.mailbox import Mailbox, text_body

AGENT = "agent@bellerive.example"
OTHER_REFERENT = "paie@bellerive.example"
SIVOM_AGENT = "technique@coteaux.example"
CORRESPONDENT = "c.bernard@cig-demo.fr"  # Bellerive in her portfolio


async def mails_about(mailbox: Mailbox, email: str, subject: str, count: int = 1) -> list[Any]:
    """The mails to ``email`` whose subject contains ``subject``, once there are ``count`` (10 s at most)."""
    for _ in range(200):
        found = [m for m in mailbox.to(email) if subject in str(m["Subject"])]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} mails '{subject}' for {email}")


async def password_step(browser: Browser, email: str, next_: str = "/") -> Any:
    response = await browser.post("/login", {"email": email, "password": DEMO_PASSWORD, "next": next_})
    assert response.status_code == 303, page_text(response)
    return response


async def factor_count(rt: Runtime, email: str) -> int:
    aid = await account_id(rt, email)
    return int(await scalar(rt, select(func.count()).select_from(SecondFactor).where(SecondFactor.account_id == aid)))


async def actions(rt: Runtime, action: str) -> list[AuditEvent]:
    return await rows(rt, select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))


# -- the two-step login ---------------------------------------------------------------------------

async def test_staff_login_is_two_steps_and_a_code_is_single_use(make_browser, runtime: Runtime) -> None:
    browser: Browser = await make_browser()
    response = await password_step(browser, REFERENT, "/services")
    assert response.headers["location"] == "/login/second-facteur?next=%2Fservices"
    # Half-authenticated: no session, no access to anything.
    assert "cvg_session" not in str(response.headers.get_list("set-cookie"))
    assert (await browser.get("/services")).headers["location"].startswith("/login")
    assert await scalar(runtime, select(func.count()).select_from(LoginSession)) == 0
    page = await browser.get(response.headers["location"])
    assert page.status_code == 200 and "Code de vérification" in page.text

    secret = demo_totp_secret(REFERENT)
    code = pyotp.TOTP(secret).generate_otp(step_at(utcnow()))
    use_step(browser.client, REFERENT, step_at(utcnow()))
    done = await browser.post("/login/second-facteur", {"code": code, "next": "/services"})
    assert done.status_code == 303 and done.headers["location"] == "/services"
    assert (await browser.get("/services")).status_code == 200
    success = (await actions(runtime, "account:login:success"))[-1]
    assert success.after["factor"] == "totp" and success.after["amr"] == ["pwd", "otp", "mfa"]

    # The same code again (another browser, right password): refused and journaled.
    other: Browser = await make_browser()
    await password_step(other, REFERENT)
    replay = await other.post("/login/second-facteur", {"code": code, "next": "/"})
    assert replay.status_code == 401 and "Code incorrect ou déjà utilisé" in replay.text
    assert (await other.get("/services")).status_code == 303
    assert len(await actions(runtime, "account:mfa:failure")) == 1


async def test_second_step_without_the_password_step_is_refused(make_browser, runtime: Runtime) -> None:
    browser: Browser = await make_browser()
    code = pyotp.TOTP(demo_totp_secret(REFERENT)).now()
    response = await browser.post("/login/second-facteur", {"code": code, "next": "/"})
    assert response.status_code == 401 and "expiré" in response.text
    # A forged half-authenticated cookie is not accepted either.
    browser.cookies.set("cvg_mfa_pending", "WzEsImZhY3RvciJd.forged.sig", domain="testserver.local", path="/login")
    response = await browser.post("/login/second-facteur", {"code": code, "next": "/"})
    assert response.status_code == 401
    assert await scalar(runtime, select(func.count()).select_from(LoginSession)) == 0


async def test_agents_log_in_with_the_password_alone(make_browser, runtime: Runtime) -> None:
    browser: Browser = await make_browser()
    response = await password_step(browser, AGENT)
    assert response.headers["location"] == "/"
    assert (await browser.get("/services")).status_code == 200


async def test_second_factor_attempts_are_throttled(make_browser, runtime: Runtime) -> None:
    browser: Browser = await make_browser()
    await password_step(browser, REFERENT)
    for _ in range(6):  # 5 free failures, then a growing delay
        assert (await browser.post("/login/second-facteur", {"code": "000000", "next": "/"})).status_code == 401
    right = await totp_code(browser.client, REFERENT)
    blocked = await browser.post("/login/second-facteur", {"code": right, "next": "/"})
    assert blocked.status_code == 429 and "patientez" in blocked.text
    # The right password does not clear the count of wrong codes either.
    again = await browser.post("/login", {"email": REFERENT, "password": DEMO_PASSWORD, "next": "/"})
    assert again.status_code == 429
    assert await scalar(runtime, select(func.count()).select_from(LoginSession)) == 0


# -- recovery codes ----------------------------------------------------------------------------------

async def test_recovery_codes_are_shown_once_stored_hashed_and_single_use(make_browser, runtime: Runtime,
                                                                         mailbox: Mailbox) -> None:
    owner = await logged_in(make_browser, REFERENT)
    noticed = len(await mails_about(mailbox, REFERENT, "nouveaux codes de secours", 0))
    page = await owner.post("/compte/double-authentification/codes-de-secours")
    assert page.status_code == 200
    codes = re.findall(r"<code>([a-z0-9-]{29})</code>", page.text)
    assert len(codes) == 10
    stored = await rows(runtime, select(RecoveryCode.code_hash).where(
        RecoveryCode.account_id == await account_id(runtime, REFERENT)))
    assert len(stored) == 10 and not set(codes) & set(stored)
    manage = await owner.get("/compte/double-authentification")
    assert codes[0] not in manage.text and "10</strong> sur 10" in manage.text
    # The owner is told (someone else regenerating them would lock them out of their recovery).
    notice = (await mails_about(mailbox, REFERENT, "nouveaux codes de secours", noticed + 1))[-1]
    assert codes[0] not in text_body(notice)

    browser: Browser = await make_browser()
    await password_step(browser, REFERENT)
    ok = await browser.post("/login/second-facteur", {"code": codes[0].upper(), "next": "/"})
    assert ok.status_code == 303
    assert (await actions(runtime, "account:recovery_codes:used"))[-1].target_label == "Sophie Martin"
    again: Browser = await make_browser()
    await password_step(again, REFERENT)
    assert (await again.post("/login/second-facteur", {"code": codes[0], "next": "/"})).status_code == 401
    # Regenerating makes the old codes useless.
    await owner.post("/compte/double-authentification/codes-de-secours")
    third: Browser = await make_browser()
    await password_step(third, REFERENT)
    assert (await third.post("/login/second-facteur", {"code": codes[1], "next": "/"})).status_code == 401


# -- policy: forced enrolment ------------------------------------------------------------------------

@pytest.mark.parametrize("email", ["admin@cig-demo.fr", CORRESPONDENT, "maire@bellerive.example", REFERENT])
async def test_staff_without_a_factor_must_enrol_before_anything(make_browser, runtime: Runtime, email: str,
                                                                 mailbox: Mailbox) -> None:
    await execute(runtime, delete(SecondFactor).where(SecondFactor.account_id == await account_id(runtime, email)))
    mailed = len(await mails_about(mailbox, email, "nouveau moyen", 0))
    browser: Browser = await make_browser()
    response = await password_step(browser, email)
    assert response.headers["location"].startswith("/login/enrolement")
    for path in ("/services", "/compte/double-authentification", "/admin", "/portefeuille"):
        assert (await browser.get(path)).status_code == 303, path  # nothing but the enrolment page
    page = await browser.get(response.headers["location"])
    assert "<svg" in page.text and "data:image" not in page.text
    wrong = await browser.post("/login/enrolement", {
        "token": re.search(r'name="token" value="([^"]+)"', page.text).group(1),  # type: ignore[union-attr]
        "code": "000000", "next": "/"})
    assert wrong.status_code == 422 and 'aria-invalid="true"' in wrong.text
    assert await factor_count(runtime, email) == 0
    await browser.enrol(response.headers["location"], email, "/")
    assert await factor_count(runtime, email) == 1
    assert (await browser.get("/compte/historique")).status_code == 200
    await mails_about(mailbox, email, "nouveau moyen", mailed + 1)


async def test_employer_setting_makes_2fa_mandatory_for_its_agents(make_browser, runtime: Runtime) -> None:
    eid = await employer_id(runtime)
    other = await employer_id(runtime, SIVOM)
    referent = await logged_in(make_browser, REFERENT)
    assert (await referent.post(f"/employeurs/{other}/double-authentification", {"required": "1"})).status_code == 403
    response = await referent.post(f"/employeurs/{eid}/double-authentification", {"required": "1"})
    assert response.status_code == 303
    assert await scalar(runtime, select(Employer.mfa_required_for_agents).where(Employer.id == eid)) is True
    assert await scalar(runtime, select(Employer.mfa_required_for_agents).where(Employer.id == other)) is False
    event = (await actions(runtime, "employer:mfa:policy"))[-1]
    assert event.employer_id == eid and event.after == {"mfa_required_for_agents": True}
    agent: Browser = await make_browser()
    assert (await password_step(agent, AGENT)).headers["location"].startswith("/login/enrolement")
    # An agent cannot change the rule.
    sivom_agent = await logged_in(make_browser, SIVOM_AGENT)
    assert (await sivom_agent.post(f"/employeurs/{other}/double-authentification",
                                   {"required": "1"})).status_code == 403


async def test_optional_factor_for_an_agent_is_then_asked_at_login(make_browser, runtime: Runtime,
                                                                   mailbox: Mailbox) -> None:
    removed = len(await mails_about(mailbox, AGENT, "moyen supprimé", 0))
    agent = await logged_in(make_browser, AGENT)
    page = await agent.get("/compte/double-authentification")
    assert "facultative" in page.text
    await agent.enrol("/compte/double-authentification/application", AGENT, "/compte/double-authentification",
                      action="/compte/double-authentification/application")
    assert await factor_count(runtime, AGENT) == 1
    again: Browser = await make_browser()
    assert (await password_step(again, AGENT)).headers["location"].startswith("/login/second-facteur")
    # Removing the only factor is allowed for an agent (optional), and mailed.
    factor = await scalar(runtime, select(SecondFactor.id).where(
        SecondFactor.account_id == await account_id(runtime, AGENT)))
    assert (await agent.post(f"/compte/double-authentification/{factor}/supprimer")).status_code == 303
    assert await factor_count(runtime, AGENT) == 0
    await mails_about(mailbox, AGENT, "moyen supprimé", removed + 1)


async def test_the_last_factor_of_a_referent_cannot_be_removed(make_browser, runtime: Runtime) -> None:
    referent = await logged_in(make_browser, REFERENT)
    mine = await scalar(runtime, select(SecondFactor.id).where(
        SecondFactor.account_id == await account_id(runtime, REFERENT)))
    response = await referent.post(f"/compte/double-authentification/{mine}/supprimer")
    assert response.status_code == 422 and "obligatoire" in response.text
    # Someone else's factor: not found, unchanged.
    theirs = await scalar(runtime, select(SecondFactor.id).where(
        SecondFactor.account_id == await account_id(runtime, OTHER_REFERENT)))
    assert (await referent.post(f"/compte/double-authentification/{theirs}/supprimer")).status_code == 404
    assert await factor_count(runtime, REFERENT) == 1 and await factor_count(runtime, OTHER_REFERENT) == 1


# -- reset by a référent / correspondent, within the authz scope -----------------------------------

async def test_reset_is_limited_to_the_actors_scope(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    eid, sivom = await employer_id(runtime), await employer_id(runtime, SIVOM)
    agent_mid = await membership_id(runtime, AGENT)
    # Give the agents a factor, so that a reset has something to remove.
    for email in (AGENT, SIVOM_AGENT):
        await execute(runtime, SecondFactor.__table__.insert().values(
            account_id=await account_id(runtime, email), kind="totp", label="x", created_at=utcnow()))
    resets = len(await mails_about(mailbox, AGENT, "réinitialisée", 0))
    referent = await logged_in(make_browser, REFERENT)
    # Tenant isolation: Bellerive's référent cannot reach a SIVOM agent, by either employer id.
    sivom_mid = await membership_id(runtime, SIVOM_AGENT, SIVOM)
    for url in (f"/employeurs/{sivom}/agents/{sivom_mid}/double-authentification/reinitialiser",
                f"/employeurs/{eid}/agents/{sivom_mid}/double-authentification/reinitialiser"):
        assert (await referent.post(url)).status_code in (403, 404), url
    assert await factor_count(runtime, SIVOM_AGENT) == 1
    # Nor another référent (the correspondent's job).
    paie = await membership_id(runtime, OTHER_REFERENT)
    assert (await referent.post(f"/employeurs/{eid}/agents/{paie}/double-authentification/reinitialiser")
            ).status_code == 403
    assert await factor_count(runtime, OTHER_REFERENT) == 1
    # Its own agent: reset, journaled, mailed, re-enrolment forced.
    response = await referent.post(f"/employeurs/{eid}/agents/{agent_mid}/double-authentification/reinitialiser")
    assert response.status_code == 303
    assert await factor_count(runtime, AGENT) == 0
    assert await scalar(runtime, select(Account.mfa_enrolment_required).where(Account.email == AGENT)) is True
    event = (await actions(runtime, "account:mfa:reset"))[-1]
    assert event.employer_id == eid and event.target_label == "Julie Moreau"
    mail = (await mails_about(mailbox, AGENT, "réinitialisée", resets + 1))[-1]
    assert "Sophie Martin" in text_body(mail)
    agent: Browser = await make_browser()
    assert (await password_step(agent, AGENT)).headers["location"].startswith("/login/enrolement")
    # The correspondent resets a référent of her portfolio.
    correspondent = await logged_in(make_browser, CORRESPONDENT)
    assert (await correspondent.post(f"/employeurs/{eid}/agents/{paie}/double-authentification/reinitialiser")
            ).status_code == 303
    assert await factor_count(runtime, OTHER_REFERENT) == 0


# -- step-up -------------------------------------------------------------------------------------

async def age_authentication(rt: Runtime, email: str, minutes: int) -> None:
    await execute(rt, update(LoginSession).where(LoginSession.account_id == await account_id(rt, email))
                  .values(authenticated_at=utcnow() - timedelta(minutes=minutes)))


async def test_factor_changes_need_a_recent_authentication(make_browser, runtime: Runtime) -> None:
    referent = await logged_in(make_browser, REFERENT)
    await age_authentication(runtime, REFERENT, 11)
    response = await referent.post("/compte/double-authentification/codes-de-secours")
    assert response.status_code == 303
    assert response.headers["location"] == ("/compte/reauthentification?next=%2Fcompte%2Fdouble-authentification")
    assert await scalar(runtime, select(func.count()).select_from(RecoveryCode)) == 0
    # A wrong password, or a right password without the code: refused.
    assert (await referent.post("/compte/reauthentification", {"password": "faux", "code": "000000",
                                                               "next": "/compte/double-authentification"})
            ).status_code == 401
    code = await totp_code(referent.client, REFERENT)
    done = await referent.post("/compte/reauthentification", {"password": DEMO_PASSWORD, "code": code,
                                                               "next": "/compte/double-authentification"})
    assert done.status_code == 303 and done.headers["location"] == "/compte/double-authentification"
    assert len(await actions(runtime, "account:reauth:success")) == 1
    assert (await referent.post("/compte/double-authentification/codes-de-secours")).status_code == 200
    # Nine minutes later: still fine.
    await age_authentication(runtime, REFERENT, 9)
    assert (await referent.post("/compte/double-authentification/codes-de-secours")).status_code == 200


async def test_designating_a_referent_needs_a_recent_authentication(make_browser, runtime: Runtime) -> None:
    authority = "maire@bellerive.example"
    eid, agent_mid = await employer_id(runtime), await membership_id(runtime, AGENT)
    browser = await logged_in(make_browser, authority)
    await age_authentication(runtime, authority, 11)
    response = await browser.post(f"/employeurs/{eid}/referents/{agent_mid}/designer")
    assert response.headers["location"].startswith("/compte/reauthentification?next=")
    assert not await actions(runtime, "membership:referent:designate")
    await browser.post("/compte/reauthentification", {"password": DEMO_PASSWORD,
                                                      "code": await totp_code(browser.client, authority)})
    assert (await browser.post(f"/employeurs/{eid}/referents/{agent_mid}/designer")).status_code == 303
    assert len(await actions(runtime, "membership:referent:designate")) == 1


# -- history and alerts ------------------------------------------------------------------------------

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:130.0) Gecko/20100101 Firefox/130.0"


async def alerts(mailbox: Mailbox, email: str, count: int) -> list[Any]:
    return await mails_about(mailbox, email, "Nouvelle connexion", count)


async def test_login_history_and_new_device_alert(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    before = len(await alerts(mailbox, AGENT, 0))
    first = await logged_in(make_browser, AGENT)  # first login: nothing to compare with, no alert
    await first.post("/login", {"email": AGENT, "password": "mauvais mot de passe", "next": "/"})
    other: Browser = await make_browser()
    response = await other.post("/login", {"email": AGENT, "password": DEMO_PASSWORD, "next": "/"},
                                headers={"User-Agent": FIREFOX})
    assert response.status_code == 303
    alert = (await alerts(mailbox, AGENT, before + 1))[-1]
    assert str(alert["Subject"]) == "Nouvelle connexion à votre compte Convergences"
    body = text_body(alert)
    assert "Firefox sur Windows" in body and "/compte/historique" in body
    assert alert.get_body(preferencelist=("html",)) is not None
    # The same device again: no new alert.
    third: Browser = await make_browser()
    await third.post("/login", {"email": AGENT, "password": DEMO_PASSWORD, "next": "/"},
                     headers={"User-Agent": FIREFOX})
    history = await first.get("/compte/historique")
    text = page_text(history)
    assert history.status_code == 200 and "Firefox sur Windows" in text and "Échec" in text and "Réussie" in text
    await asyncio.sleep(0.5)
    assert len(await alerts(mailbox, AGENT, 0)) == before + 1


# -- amr in ID tokens ------------------------------------------------------------------------------

def _claims(id_token: str) -> dict[str, Any]:
    payload = id_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


async def _id_token(browser: Browser) -> dict[str, Any]:
    redirect_uri = "http://127.0.0.1:8001/callback"
    response = await browser.get("/oidc/authorize", params={
        "client_id": "demo-bip", "response_type": "code", "scope": "openid", "redirect_uri": redirect_uri,
        "state": "s", "nonce": "n"})
    assert response.status_code == 303, page_text(response)
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    token = await browser.client.post("/oidc/token", data={"grant_type": "authorization_code", "code": code,
                                                           "redirect_uri": redirect_uri},
                                      auth=("demo-bip", "demo-bip-secret"))
    assert token.status_code == 200, token.text
    return _claims(token.json()["id_token"])


async def test_amr_reflects_the_factors(make_browser, runtime: Runtime) -> None:
    referent = await logged_in(make_browser, REFERENT)  # Bellerive's référent holds a BIP right
    assert (await _id_token(referent))["amr"] == ["pwd", "otp", "mfa"]
    agent = await logged_in(make_browser, AGENT)
    assert (await _id_token(agent))["amr"] == ["pwd"]


async def test_the_half_authenticated_state_lasts_five_minutes(make_browser, runtime: Runtime,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A right password leaves a signed state valid 5 minutes: an older one is refused, code or not."""
    import time as clock

    from convergences.mfa.policy import FACTOR, PENDING_COOKIE, pending_value

    aid = await account_id(runtime, REFERENT)
    real = clock.time
    monkeypatch.setattr(clock, "time", lambda: real() - 301)  # signed 5 min 1 s ago
    old = pending_value(runtime, aid, FACTOR)
    monkeypatch.setattr(clock, "time", real)
    browser: Browser = await make_browser()
    browser.cookies.set(PENDING_COOKIE, old, domain="testserver.local", path="/login")
    response = await browser.post("/login/second-facteur", {"code": await totp_code(browser.client, REFERENT),
                                                           "next": "/"})
    assert response.status_code == 401 and "expiré" in response.text
    assert await scalar(runtime, select(func.count()).select_from(LoginSession)) == 0
    fresh = pending_value(runtime, aid, FACTOR)
    browser.cookies.set(PENDING_COOKIE, fresh, domain="testserver.local", path="/login")
    assert (await browser.post("/login/second-facteur", {"code": await totp_code(browser.client, REFERENT),
                                                         "next": "/"})).status_code == 303


async def test_operator_resets_a_cig_staff_member(runtime: Runtime, settings: Any, mailbox: Mailbox) -> None:
    """CIG staff belong to no employer: the server operator resets them with `convergences mfa-reset`."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).with_name("convergences"))
    env = {**os.environ, "CONVERGENCES_DATABASE_URL": settings.database.url,
           "CONVERGENCES_SECRET_KEY": settings.secret_key, "CONVERGENCES_SMTP_HOST": "127.0.0.1",
           "CONVERGENCES_SMTP_PORT": str(mailbox.port)}
    before = len(await mails_about(mailbox, "admin@cig-demo.fr", "réinitialisée", 0))
    done = await asyncio.to_thread(subprocess.run, [cli, "mfa-reset", "--email", "Admin@cig-demo.fr"], env=env,
                                   capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert await factor_count(runtime, "admin@cig-demo.fr") == 0
    assert await scalar(runtime, select(Account.mfa_enrolment_required).where(
        Account.email == "admin@cig-demo.fr")) is True
    event = (await actions(runtime, "account:mfa:reset"))[-1]
    assert event.actor_label == "système" and event.before == {"factors": ["totp"]}
    await mails_about(mailbox, "admin@cig-demo.fr", "réinitialisée", before + 1)
    unknown = await asyncio.to_thread(subprocess.run, [cli, "mfa-reset", "--email", "personne@nulle-part.example"],
                                      env=env, capture_output=True, text=True, timeout=120)
    assert unknown.returncode != 0 and "Aucun compte" in unknown.stderr


async def test_after_a_factor_change_the_other_sessions_can_be_ended(make_browser, runtime: Runtime) -> None:
    """ASVS 7.4.3: after adding or removing a factor, the person is offered to end their other sessions."""
    laptop = await logged_in(make_browser, AGENT)
    phone = await logged_in(make_browser, AGENT)
    await laptop.enrol("/compte/double-authentification/application", AGENT, "/compte/double-authentification",
                       action="/compte/double-authentification/application")
    page = await laptop.get("/compte/double-authentification")
    assert "Déconnecter mes autres sessions" in page.text and 'action="/compte/sessions/autres"' in page.text
    assert "1 autre session" in re.sub(r"\s+", " ", page.text)
    assert (await laptop.post("/compte/sessions/autres")).status_code == 303
    assert (await phone.get("/services")).status_code in (302, 303)  # the phone is logged out
    page = await laptop.get("/compte/double-authentification")
    assert page.status_code == 200 and "Déconnecter mes autres sessions" not in page.text
