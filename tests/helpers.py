"""Shared test helpers: a small form-posting browser over Litestar's test client (CSRF handled like a real
page does), look-ups in the demo data, and the setup pieces several test packages share."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from httpx import Cookies, Response
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from convergences.accounts.models import Account
from convergences.applications.models import Application
from convergences.db import transaction
from convergences.employers.models import Employer, Membership
from convergences.runtime import Runtime
from convergences.seed import DEMO_PASSWORD, demo_totp_secret

CSRF_COOKIE = "cvg_csrf"

# Demo employers (convergences.seed).
BELLERIVE = "21930999900015"
SIVOM = "25930999900011"
VALFLEURI = "21930888800011"
# Demo accounts.
REFERENT = "rh@bellerive.example"  # Bellerive's référent
CIG_ADMIN = "admin@cig-demo.fr"


class Browser:
    def __init__(self, client: AsyncTestClient[Any], *, own_cookies: bool = False) -> None:
        self.client = client
        self.jar = Cookies() if own_cookies else None

    async def _send(self, method: str, url: str, **kwargs: Any) -> Response:
        if self.jar is not None:
            self.client.cookies = self.jar
        try:
            return await self.client.request(method, url, **kwargs)
        finally:
            if self.jar is not None:
                self.jar = Cookies(self.client.cookies)

    async def get(self, url: str, **kwargs: Any) -> Response:
        kwargs.setdefault("follow_redirects", False)
        return await self._send("GET", url, **kwargs)

    @property
    def cookies(self) -> Cookies:
        return self.jar if self.jar is not None else self.client.cookies

    async def csrf(self) -> str:
        token = self.cookies.get(CSRF_COOKIE)
        if not token:
            await self.get("/login")
            token = self.cookies.get(CSRF_COOKIE)
        assert token, "no CSRF cookie was set"
        return token

    async def post(self, url: str, data: dict[str, Any] | None = None, *, htmx: bool = False,
                   csrf: bool = True, **kwargs: Any) -> Response:
        form = dict(data or {})
        if csrf:
            form["_csrf_token"] = await self.csrf()
        headers = kwargs.pop("headers", {})
        if htmx:
            headers["HX-Request"] = "true"
        kwargs.setdefault("follow_redirects", False)
        return await self._send("POST", url, data=form, headers=headers, **kwargs)

    async def login(self, email: str, password: str = DEMO_PASSWORD) -> Response:
        """Log in through the real form, then the real second step when there is one (a TOTP code of
        the account's known secret, or enrolment of a new one when the portal asks for it)."""
        response = await self.post("/login", {"email": email, "password": password, "next": "/"})
        assert response.status_code == 303, (response.status_code, _text(response))
        return await self.second_step(response, email)

    async def second_step(self, response: Response, email: str) -> Response:
        location = response.headers.get("location", "")
        target = parse_qs(urlsplit(location).query).get("next", ["/"])[0]
        if location.startswith("/login/second-facteur"):
            code = await totp_code(self.client, email)
            response = await self.post("/login/second-facteur", {"code": code, "next": target})
            assert response.status_code == 303, (response.status_code, _text(response))
        elif location.startswith("/login/enrolement"):
            await self.enrol(location, email, target)
        return response

    async def enrol(self, page_url: str, email: str, target: str, action: str = "/login/enrolement") -> Response:
        """Enrol a TOTP factor from an enrolment page (its secret read from the page, as a person would)."""
        page = await self.get(page_url)
        assert page.status_code == 200, (page.status_code, _text(page))
        secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page.text).group(1).replace(" ", "")  # type: ignore[union-attr]
        token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        remember_secret(_database(self.client), email, secret)
        done = await self.post(action, {"token": token, "code": await totp_code(self.client, email),
                                        "label": "Test", "next": target})
        assert done.status_code == 200 and "codes de secours" in done.text, (done.status_code, _text(done))
        return done

    async def logout(self) -> Response:
        return await self.post("/logout")


# TOTP codes for the tests' logins. A code is accepted once (replay protection), within ±1 step: the
# helpers remember, per test database and account, which steps they used, and wait for the next 30 s
# step only when the three acceptable ones are spent.
_used_steps: dict[str, dict[str, int]] = {}
_secrets: dict[str, dict[str, str]] = {}


def _database(client: Any) -> str:
    """The test database behind a test client (one per test): the key of what was used in it."""
    return str(client.app.state.runtime.settings.database.url)


def use_step(client: Any, email: str, step: int) -> None:
    """Tell the helpers that a test used this step itself (so they never replay it)."""
    used = _used_steps.setdefault(_database(client), {})
    used[email] = max(used.get(email, step), step)


def _pick_code(database: str, email: str) -> str | None:
    """A code of a step this test has not used yet for this account, or None (wait for the next step)."""
    secret = _secrets.setdefault(database, {}).get(email) or demo_totp_secret(email)
    used = _used_steps.setdefault(database, {})
    moment = time.time()
    now = int(moment) // 30
    # The previous step only well before a step boundary: the server may read the clock a moment later.
    candidates = (now - 1, now, now + 1) if 30 - moment % 30 > 5 else (now, now + 1)
    for step in candidates:
        if step > used.get(email, step - 1):
            used[email] = step
            return str(pyotp.TOTP(secret).generate_otp(step))
    return None


async def totp_code(client: Any, email: str) -> str:
    code = _pick_code(_database(client), email)
    if code is None:  # the three acceptable steps are spent: the next one comes within 30 s
        await asyncio.sleep(30 - time.time() % 30 + 0.2)
        code = _pick_code(_database(client), email)
    assert code is not None
    return code


def totp_code_blocking(database: str, email: str) -> str:
    """The same for synchronous callers (Playwright's sync API): ``database`` names the live server's."""
    code = _pick_code(database, email)
    if code is None:
        time.sleep(30 - time.time() % 30 + 0.2)
        code = _pick_code(database, email)
    assert code is not None
    return code


def remember_secret(database: str, email: str, secret: str) -> None:
    _secrets.setdefault(database, {})[email] = secret


def email_changed(client: Any, old: str, new: str) -> None:
    """The person's address changed: their authenticator (secret, steps already used) follows them."""
    database = _database(client)
    secrets_, used = _secrets.setdefault(database, {}), _used_steps.setdefault(database, {})
    secrets_[new] = secrets_.get(old) or demo_totp_secret(old)
    if old in used:
        used[new] = used[old]


async def logged_in(make_browser: Any, email: str, password: str = DEMO_PASSWORD) -> Browser:
    """A new visitor (``make_browser`` fixture) logged in as ``email``."""
    browser: Browser = await make_browser()
    await browser.login(email, password)
    return browser


def _text(response: Response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))[:800]


def page_text(response: Response) -> str:
    return _text(response)


# --- the demo data, read from the test's own Runtime ---------------------------------------------------

async def scalar(rt: Runtime, stmt: Any) -> Any:
    async with transaction(rt.maker) as db:
        return await db.scalar(stmt)


async def rows(rt: Runtime, stmt: Any) -> list[Any]:
    async with transaction(rt.maker) as db:
        return list((await db.scalars(stmt)).all())


async def execute(rt: Runtime, stmt: Any) -> None:
    async with transaction(rt.maker) as db:
        await db.execute(stmt)


async def employer_id(rt: Runtime, siret: str = BELLERIVE) -> int:
    return int(await scalar(rt, select(Employer.id).where(Employer.siret == siret)))


async def account_id(rt: Runtime, email: str) -> int:
    return int(await scalar(rt, select(Account.id).where(Account.email == email)))


async def app_id(rt: Runtime, slug: str) -> int:
    return int(await scalar(rt, select(Application.id).where(Application.slug == slug)))


def _of_member(stmt: Any, email: str, siret: str) -> Any:
    return (stmt.join(Account, Membership.account_id == Account.id)
            .join(Employer, Membership.employer_id == Employer.id)
            .where(Account.email == email, Employer.siret == siret))


async def membership(rt: Runtime, email: str, siret: str = BELLERIVE) -> Membership | None:
    return await scalar(rt, _of_member(select(Membership), email, siret))


async def membership_id(rt: Runtime, email: str, siret: str = BELLERIVE) -> int:
    return int(await scalar(rt, _of_member(select(Membership.id), email, siret)))


# --- setup shared by the packages that need a real server, browser or Apache ----------------------------

def unavailable(message: str, tests: str) -> NoReturn:
    """A missing system dependency: skip the tests, except under CI=true where they are required."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}: the {tests} are required under CI=true")
    pytest.skip(f"{message}: {tests} skipped")


@contextmanager
def scratch_directory(prefix: str) -> Iterator[Path]:
    """A directory outside pytest's temp root, removed afterwards unless CONVERGENCES_KEEP_BROWSER_DIR=1."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield directory
    finally:
        if os.environ.get("CONVERGENCES_KEEP_BROWSER_DIR") != "1":
            shutil.rmtree(directory, ignore_errors=True)
