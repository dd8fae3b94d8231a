"""CSRF: every POST of the app without a valid token is refused (403) and changes nothing; GET requests
never change state. The routes are enumerated from the app itself, so a new route is covered too."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from litestar import Litestar
from sqlalchemy import func, select

from convergences.db import Base, transaction
from convergences.mail.models import OutboxMail
from convergences.runtime import Runtime
from tests.helpers import CIG_ADMIN, REFERENT, Browser, app_id, employer_id, logged_in, membership_id
from tests.mailbox import Mailbox, invitation_path

PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


async def dump(rt: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order."""
    result: dict[str, list[tuple[Any, ...]]] = {}
    async with transaction(rt.maker) as db:
        for table in Base.metadata.sorted_tables:
            found = (await db.execute(select(table))).all()
            result[table.name] = sorted(tuple(map(repr, row)) for row in found)
    return result


# Called by applications' servers or by cross-site protocol form posts: they authenticate the client
# (token, revocation, introspection), carry a bearer token (userinfo), or only ever act on the caller's
# own session after checks of their own (authorize, RP-initiated logout with id_token_hint).
CSRF_EXEMPT_PATHS = {"/oidc/authorize", "/oidc/token", "/oidc/userinfo", "/oidc/revoke", "/oidc/introspect",
                     "/oidc/logout"}


def routes(app: Litestar, method: str) -> list[str]:
    paths = set()
    for route in app.routes:
        if method in getattr(route, "methods", set()) and not route.path.startswith(("/static", "/schema")):
            if method == "POST" and route.path in CSRF_EXEMPT_PATHS:
                continue
            paths.add(route.path)
    return sorted(paths)


async def path_values(rt: Runtime, token: str) -> dict[str, str]:
    eid, mid = await employer_id(rt), await membership_id(rt, "agent@bellerive.example")
    aid = await app_id(rt, "bip")
    return {"employer_id": str(eid), "membership_id": str(mid), "application_id": str(aid), "token": token}


def fill(path: str, values: dict[str, str]) -> str:
    return PARAM.sub(lambda m: values.get(m.group(1), "1"), path)


async def fresh_invitation(browser: Browser, rt: Runtime, mailbox: Mailbox, eid: str) -> str:
    email = f"csrf.{uuid.uuid4().hex[:8]}@bellerive.example"
    response = await browser.post(f"/employeurs/{eid}/agents", {"given_name": "Inès", "family_name": "Blanc",
                                                                "email": email})
    assert response.status_code == 303
    path = invitation_path((await mailbox.wait_for(email))[-1])
    # Let the background delivery record itself before any snapshot of the database.
    for _ in range(200):
        async with transaction(rt.maker) as db:
            if not await db.scalar(select(func.count()).select_from(OutboxMail).where(OutboxMail.sent_at.is_(None))):
                return path
        await asyncio.sleep(0.05)
    raise AssertionError("the outbox was not delivered")


async def test_every_post_without_token_is_refused(make_browser, app: Litestar, runtime: Runtime,
                                                   mailbox: Mailbox) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    values = await path_values(runtime, "x")
    invitation = await fresh_invitation(admin, runtime, mailbox, values["employer_id"])
    values["token"] = invitation.rsplit("/", 1)[1]
    posts = routes(app, "POST")
    assert "/login" in posts and "/logout" in posts and "/employeurs/{employer_id:int}/agents" in posts
    assert len(posts) >= 15
    body = {"email": "admin@cig-demo.fr", "password": "Convergences demo 2026 !", "given_name": "A",
            "family_name": "B", "enabled": "1", "name": "X", "siret": "21930999900015", "kind": "commune",
            "slug": "x", "launch_url": "https://x.example/", "confirmation": "Convergences demo 2026 !"}
    before = await dump(runtime)
    wrong = "0" * 128
    for path in posts:
        url = fill(path, values)
        missing = await admin.post(url, body, csrf=False)
        assert missing.status_code == 403, (url, missing.status_code)
        assert "Formulaire expiré" in missing.text, url
        forged = await admin.post(url, {**body, "_csrf_token": wrong}, csrf=False)
        assert forged.status_code == 403, url
        header = await admin.post(url, body, csrf=False, headers={"x-csrftoken": wrong})
        assert header.status_code == 403, url
    assert await dump(runtime) == before
    # The invitation is still usable and the admin still logged in (logout was refused too).
    assert (await admin.get(invitation)).status_code == 200
    assert (await admin.get("/employeurs/" + values["employer_id"] + "/agents")).status_code == 200


async def test_token_from_another_browser_is_refused(make_browser, runtime: Runtime) -> None:
    victim, attacker = await make_browser(), await make_browser()
    await victim.login("rh@bellerive.example")
    values = await path_values(runtime, "x")
    before = await dump(runtime)
    stolen = await attacker.csrf()
    response = await victim.post(f"/employeurs/{values['employer_id']}/agents/{values['membership_id']}/suspendre",
                                 {"_csrf_token": stolen}, csrf=False)
    assert response.status_code == 403
    assert await dump(runtime) == before


async def test_htmx_header_token_is_accepted(make_browser, runtime: Runtime) -> None:
    # htmx sends the token in the x-csrftoken header configured on <body>.
    browser = await logged_in(make_browser, REFERENT)
    page = await browser.get("/services")
    token = re.search(r'hx-headers=\'\{"x-csrftoken": "([0-9a-f]+)"\}\'', page.text)
    assert token, "the page configures htmx with the CSRF header"
    values = await path_values(runtime, "x")
    url = f"/employeurs/{values['employer_id']}/agents/{values['membership_id']}/droits/{values['application_id']}"
    response = await browser.post(url, {}, csrf=False, headers={"x-csrftoken": token.group(1),
                                                                 "HX-Request": "true"})
    assert response.status_code == 200


async def test_get_requests_never_change_state(make_browser, app: Litestar, runtime: Runtime,
                                               mailbox: Mailbox) -> None:
    admin, referent, visitor = await make_browser(), await make_browser(), await make_browser()
    await admin.login("admin@cig-demo.fr")
    await referent.login("rh@bellerive.example")
    values = await path_values(runtime, "x")
    invitation = await fresh_invitation(referent, runtime, mailbox, values["employer_id"])
    values["token"] = invitation.rsplit("/", 1)[1]
    gets = routes(app, "GET")
    assert "/employeurs/{employer_id:int}/agents/{membership_id:int}/supprimer" in gets
    before = await dump(runtime)
    for path in gets:
        url = fill(path, values)
        for browser in (admin, referent, visitor):
            response = await browser.get(url)
            assert response.status_code < 500, (url, response.status_code)
        # The same path with the names of state-changing actions in the query string changes nothing either.
        await admin.get(url + "?enabled=1&action=supprimer")
    assert await dump(runtime) == before
    # Above all: the deletion confirmation page deleted nothing, the invitation is unused.
    assert (await visitor.get(invitation)).status_code == 200
