"""ASVS 5.0 6.4.3: resetting a forgotten password never bypasses the second factor.

A référent with a TOTP factor resets her password through the mailed link: the reset ends her sessions and
opens none; logging in with the new password stops at the half-authenticated step (no session, no access,
whatever cookie is shown) and only the right TOTP code opens a session. The factor itself is kept."""

from __future__ import annotations

from email.message import EmailMessage

import pyotp
from sqlalchemy import func, select

from convergences.accounts.models import Account
from convergences.db import utcnow
from convergences.mfa.models import SecondFactor
from convergences.mfa.policy import PENDING_COOKIE
from convergences.mfa.totp import step_at
from convergences.runtime import Runtime
from convergences.seed import DEMO_PASSWORD, demo_totp_secret
from tests.credentials_support import NEW_PASSWORD, events, link_path, session_count
from tests.helpers import REFERENT, Browser, account_id, logged_in, page_text, scalar, totp_code
from tests.mailbox import Mailbox

RESET = "/mot-de-passe/reinitialiser/"
RESET_SUBJECT = "Réinitialisation de votre mot de passe"


async def reset_mail(mailbox: Mailbox, email: str, before: int) -> EmailMessage:
    """The first reset mail ``email`` received after the ``before`` mails it already had."""
    for count in range(before + 1, before + 6):
        found = [m for m in (await mailbox.wait_for(email, count))[before:] if RESET_SUBJECT in str(m["Subject"])]
        if found:
            return found[0]
    raise AssertionError(f"no reset mail for {email}")


def a_wrong_code(email: str) -> str:
    """A 6-digit code that is none of the codes the server could accept now (±2 steps, to be sure)."""
    totp, now = pyotp.TOTP(demo_totp_secret(email)), step_at(utcnow())
    valid = {totp.generate_otp(step) for step in range(now - 2, now + 3)}
    return next(code for code in (f"{n:06d}" for n in range(1_000_000)) if code not in valid)


def session_cookies(response, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [c for c in response.headers.get_list("set-cookie") if c.startswith(name + "=")]


async def test_a_reset_password_still_needs_the_second_factor(make_browser, runtime: Runtime,
                                                              mailbox: Mailbox) -> None:
    session_cookie = runtime.settings.session_cookie
    aid = await account_id(runtime, REFERENT)
    factors = select(func.count()).select_from(SecondFactor).where(SecondFactor.account_id == aid)
    assert await scalar(runtime, factors) == 1  # the demo référent's TOTP app

    # She is logged in somewhere (password + code): the reset ends that session too.
    elsewhere = await logged_in(make_browser, REFERENT)
    assert await session_count(runtime, REFERENT) == 1

    # "Mot de passe oublié ?": the link comes by mail; the new password is set through it.
    visitor: Browser = await make_browser()
    before = len(mailbox.to(REFERENT))
    asked = await visitor.post("/mot-de-passe/oublie", {"email": REFERENT})
    assert asked.status_code == 200, page_text(asked)
    path = link_path(await reset_mail(mailbox, REFERENT, before), RESET)
    done = await visitor.post(path, {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD})
    assert done.status_code == 303 and done.headers["location"] == "/login", page_text(done)
    assert not session_cookies(done, session_cookie)
    assert await session_count(runtime, REFERENT) == 0
    assert (await elsewhere.get("/services")).headers["location"].startswith("/login")
    assert len(await events(runtime, "account:password:reset")) == 1
    # The reset touched the password only: the factor and the policy are unchanged.
    assert await scalar(runtime, factors) == 1
    assert await scalar(runtime, select(Account.mfa_enrolment_required).where(Account.id == aid)) is False

    # The old password is gone.
    old = await (await make_browser()).post("/login", {"email": REFERENT, "password": DEMO_PASSWORD, "next": "/"})
    assert old.status_code == 401

    # The new password is only the first step: a redirect to the second factor, and no session.
    first = await visitor.post("/login", {"email": REFERENT, "password": NEW_PASSWORD, "next": "/services"})
    assert first.status_code == 303, page_text(first)
    assert first.headers["location"] == "/login/second-facteur?next=%2Fservices"
    assert not session_cookies(first, session_cookie)
    pending = visitor.cookies.get(PENDING_COOKIE)
    assert pending
    assert (await visitor.get("/services")).headers["location"].startswith("/login")
    assert await session_count(runtime, REFERENT) == 0
    # The half-authenticated state is no session either, even when shown as the session cookie.
    forger: Browser = await make_browser()
    forger.cookies.set(session_cookie, pending, domain="testserver.local", path="/")
    assert (await forger.get("/services")).headers["location"].startswith("/login")

    # A wrong code opens nothing.
    wrong = await visitor.post("/login/second-facteur", {"code": a_wrong_code(REFERENT), "next": "/services"})
    assert wrong.status_code == 401 and "Code incorrect" in wrong.text
    assert not session_cookies(wrong, session_cookie)
    assert (await visitor.get("/services")).headers["location"].startswith("/login")
    assert await session_count(runtime, REFERENT) == 0

    # The right TOTP code: only now is she logged in.
    right = await visitor.post("/login/second-facteur", {"code": await totp_code(visitor.client, REFERENT),
                                                         "next": "/services"})
    assert right.status_code == 303 and right.headers["location"] == "/services", page_text(right)
    assert session_cookies(right, session_cookie)
    assert (await visitor.get("/services")).status_code == 200
    assert await session_count(runtime, REFERENT) == 1
    success = (await events(runtime, "account:login:success"))[-1]
    assert success.target_id == aid
    assert success.after["factor"] == "totp" and success.after["amr"] == ["pwd", "otp", "mfa"]
