"""Shared test helpers: a small form-posting browser over Litestar's test client (CSRF handled like a real
page does), look-ups in the demo data, and the setup pieces several test packages share."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest
from httpx import Cookies, Response
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from convergences.accounts.models import Account
from convergences.applications.models import Application
from convergences.db import transaction
from convergences.employers.models import Employer, Membership
from convergences.runtime import Runtime
from convergences.seed import DEMO_PASSWORD

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
        response = await self.post("/login", {"email": email, "password": password, "next": "/"})
        assert response.status_code == 303, (response.status_code, _text(response))
        return response

    async def logout(self) -> Response:
        return await self.post("/logout")


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
