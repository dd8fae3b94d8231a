"""Server-side login sessions: cookie attributes, a new id at every login, logout, idle and absolute
timeouts, and the end of every session of a suspended or removed agent."""

from __future__ import annotations

from datetime import timedelta

from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update

from convergences.accounts.models import Account
from convergences.app import create_app
from convergences.db import transaction, utcnow
from convergences.employers.models import Membership
from convergences.runtime import Runtime
from convergences.security.models import LoginSession
from convergences.security.tokens import digest
from tests.conftest import settings_with
from tests.helpers import (
    CIG_ADMIN,
    REFERENT,
    VALFLEURI,
    Browser,
    account_id,
    employer_id,
    execute,
    logged_in,
    membership_id,
    scalar,
)


async def sessions_of(rt: Runtime, email: str) -> list[LoginSession]:
    async with transaction(rt.maker) as db:
        return list((await db.scalars(select(LoginSession).join(Account).where(Account.email == email)
                                      .order_by(LoginSession.created_at))).all())


def cookie_header(response, name: str) -> str:  # type: ignore[no-untyped-def]
    found = [c for c in response.headers.get_list("set-cookie") if c.startswith(name + "=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


def cookie_value(response, name: str = "cvg_session") -> str:  # type: ignore[no-untyped-def]
    return cookie_header(response, name).split(";", 1)[0].split("=", 1)[1]


async def is_logged_in(browser: Browser) -> bool:
    response = await browser.get("/services")
    if response.status_code == 200:
        return True
    assert response.status_code == 303 and response.headers["location"].startswith("/login"), response
    return False


async def test_https_cookie_is_secure_with_host_prefix(settings, runtime: Runtime) -> None:
    secure = settings_with(settings, base_url="https://portail.cig-demo.fr")
    async with AsyncTestClient(app=create_app(secure), base_url="https://testserver.local") as client:
        first = await client.get("/login")
        assert "secure" in [a.strip().lower() for a in cookie_header(first, "cvg_csrf").split(";")]
        browser = Browser(client, own_cookies=True)
        response = await browser.login("agent@bellerive.example")
        header = cookie_header(response, "__Host-cvg_session")
        attributes = [a.strip().lower() for a in header.split(";")]
        assert {"secure", "httponly", "samesite=lax", "path=/"} <= set(attributes)
        assert not [a for a in attributes if a.startswith("domain=")]  # required by __Host-
        assert not [c for c in response.headers.get_list("set-cookie") if c.startswith("cvg_session=")]
        assert response.headers["strict-transport-security"].startswith("max-age=31536000")
        assert await is_logged_in(browser)


async def test_http_cookie_attributes(make_browser, runtime: Runtime) -> None:
    browser = await make_browser()
    response = await browser.login("agent@bellerive.example")
    attributes = [a.strip().lower() for a in cookie_header(response, "cvg_session").split(";")]
    assert {"httponly", "samesite=lax", "path=/"} <= set(attributes)
    assert "strict-transport-security" not in response.headers


async def test_new_session_id_at_every_login(make_browser, runtime: Runtime) -> None:
    browser = await make_browser()
    first = cookie_value(await browser.login("agent@bellerive.example"))
    second = cookie_value(await browser.login("agent@bellerive.example"))
    assert first != second
    rows = await sessions_of(runtime, "agent@bellerive.example")
    ids = {row.id for row in rows}
    # The first session is either deleted or a distinct row: never the same id reused.
    assert len(ids) == len(rows) and 1 <= len(rows) <= 2
    assert await is_logged_in(browser)
    # At least 128 random bits: the stored id is a SHA-256 of a 256-bit token, never the cookie itself.
    for row in rows:
        assert len(row.id) == 64 and row.id not in (first, second)


async def test_client_chosen_session_cookie_is_never_adopted(make_browser, runtime: Runtime) -> None:
    browser = await make_browser()
    chosen = "attaquant-choisit-cette-valeur"
    browser.cookies.set("cvg_session", chosen, domain="testserver.local", path="/")
    assert not await is_logged_in(browser)
    issued = cookie_value(await browser.login("agent@bellerive.example"))
    assert issued != chosen
    rows = await sessions_of(runtime, "agent@bellerive.example")
    assert rows and all(row.id not in (chosen, digest(chosen)) for row in rows)
    # A stranger holding only the chosen value gets nothing.
    stranger = await make_browser()
    stranger.cookies.set("cvg_session", chosen, domain="testserver.local", path="/")
    assert not await is_logged_in(stranger)


async def test_logout_deletes_the_server_session(make_browser, runtime: Runtime) -> None:
    browser = await make_browser()
    cookie = cookie_value(await browser.login("agent@bellerive.example"))
    assert len(await sessions_of(runtime, "agent@bellerive.example")) == 1
    response = await browser.logout()
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert "max-age=0" in cookie_header(response, "cvg_session").lower()
    assert await sessions_of(runtime, "agent@bellerive.example") == []
    # Replaying the old cookie from another browser no longer works.
    replay = await make_browser()
    replay.cookies.set("cvg_session", cookie, domain="testserver.local", path="/")
    assert not await is_logged_in(replay)
    assert not await is_logged_in(browser)


async def test_get_logout_does_not_end_the_session(make_browser, runtime: Runtime) -> None:
    browser = await logged_in(make_browser, "agent@bellerive.example")
    response = await browser.get("/logout")
    assert response.status_code in (404, 405)
    assert await is_logged_in(browser)


async def test_idle_timeout(make_browser, runtime: Runtime) -> None:
    browser = await logged_in(make_browser, "agent@bellerive.example")
    email = "agent@bellerive.example"
    # 29 minutes idle: still alive, and the visit refreshes last_seen_at.
    await execute(runtime, update(LoginSession).values(last_seen_at=utcnow() - timedelta(minutes=29)))
    assert await is_logged_in(browser)
    refreshed = (await sessions_of(runtime, email))[0].last_seen_at
    assert utcnow() - refreshed < timedelta(minutes=1)
    # 30 minutes idle: gone, and the row is deleted.
    await execute(runtime, update(LoginSession).values(last_seen_at=utcnow() - timedelta(minutes=30, seconds=5)))
    response = await browser.get("/services")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=%2Fservices"
    assert await sessions_of(runtime, email) == []


async def test_absolute_timeout(make_browser, runtime: Runtime) -> None:
    browser = await logged_in(make_browser, "agent@bellerive.example")
    row = (await sessions_of(runtime, "agent@bellerive.example"))[0]
    assert abs((row.expires_at - row.created_at) - timedelta(hours=12)) < timedelta(seconds=1)
    # Active every minute, but past the absolute lifetime: over.
    await execute(runtime, update(LoginSession).values(
        created_at=utcnow() - timedelta(hours=12), authenticated_at=utcnow() - timedelta(hours=12),
        expires_at=utcnow() - timedelta(seconds=1), last_seen_at=utcnow()))
    assert not await is_logged_in(browser)
    assert await sessions_of(runtime, "agent@bellerive.example") == []


async def test_session_manager_timeouts_with_a_clock(runtime: Runtime) -> None:
    manager = runtime.sessions
    start = utcnow()
    uid = await account_id(runtime, "agent@bellerive.example")
    async with transaction(runtime.maker) as db:
        new = manager.create(db, uid, "192.0.2.1", "pytest", now=start)
    # Idle: activity every 25 minutes keeps it alive until the 12-hour cap, not one minute more.
    clock = start
    while clock + timedelta(minutes=25) < start + timedelta(hours=12):
        clock += timedelta(minutes=25)
        async with transaction(runtime.maker) as db:
            assert await manager.load(db, new.cookie_value, now=clock) is not None, clock - start
    async with transaction(runtime.maker) as db:
        assert await manager.load(db, new.cookie_value, now=start + timedelta(hours=12)) is None
    async with transaction(runtime.maker) as db:
        assert await db.get(LoginSession, new.row.id) is None

    async with transaction(runtime.maker) as db:
        idle = manager.create(db, uid, None, None, now=start)
    async with transaction(runtime.maker) as db:
        assert await manager.load(db, idle.cookie_value, now=start + timedelta(minutes=29, seconds=59)) is not None
    async with transaction(runtime.maker) as db:
        # last_seen was refreshed at 29:59, so 30 minutes after *that* it is over.
        assert await manager.load(db, idle.cookie_value, now=start + timedelta(minutes=59, seconds=59)) is None
    async with transaction(runtime.maker) as db:
        assert await manager.load(db, "n'importe quoi") is None
        assert await manager.load(db, None) is None
        assert await manager.load(db, idle.cookie_value[:-2] + "xx") is None


async def test_suspension_ends_every_session_at_once(make_browser, runtime: Runtime) -> None:
    email = "agent@bellerive.example"
    phone, laptop = await make_browser(), await make_browser()
    await phone.login(email)
    await laptop.login(email)
    assert len(await sessions_of(runtime, email)) == 2
    referent = await logged_in(make_browser, REFERENT)
    eid, mid = await employer_id(runtime), await membership_id(runtime, email)
    response = await referent.post(f"/employeurs/{eid}/agents/{mid}/suspendre")
    assert response.status_code == 303
    assert await sessions_of(runtime, email) == []
    assert not await is_logged_in(phone) and not await is_logged_in(laptop)
    assert await scalar(runtime, select(Membership.suspended_at).where(Membership.id == mid)) is not None
    # The référent's own session is untouched.
    assert await is_logged_in(referent)


async def test_deletion_ends_every_session(make_browser, runtime: Runtime) -> None:
    # Nadia serves SIVOM (référent) and Val-Fleuri (agent); the CIG admin removes her from Val-Fleuri.
    email = "secretariat@coteaux.example"
    nadia = await logged_in(make_browser, email)
    admin = await logged_in(make_browser, CIG_ADMIN)
    eid, mid = await employer_id(runtime, VALFLEURI), await membership_id(runtime, email, VALFLEURI)
    response = await admin.post(f"/employeurs/{eid}/agents/{mid}/supprimer")
    assert response.status_code == 303
    assert await sessions_of(runtime, email) == []
    assert not await is_logged_in(nadia)
    # Her account remains, still attached to SIVOM, and she can log in again there.
    assert await scalar(runtime, select(func.count()).select_from(Membership).join(Account)
                        .where(Account.email == email)) == 1
    await nadia.login(email)
    assert await is_logged_in(nadia)


async def test_session_of_a_deleted_account_is_gone(make_browser, runtime: Runtime) -> None:
    email = "agent@bellerive.example"
    agent = await logged_in(make_browser, email)
    referent = await logged_in(make_browser, REFERENT)
    eid, mid = await employer_id(runtime), await membership_id(runtime, email)
    ids = [row.id for row in await sessions_of(runtime, email)]
    assert len(ids) == 1
    assert (await referent.post(f"/employeurs/{eid}/agents/{mid}/supprimer")).status_code == 303
    assert await scalar(runtime, select(Account.id).where(Account.email == email)) is None
    assert await scalar(runtime, select(func.count()).select_from(LoginSession)
                        .where(LoginSession.id.in_(ids))) == 0
    assert not await is_logged_in(agent)


async def test_login_again_ends_the_previous_session_of_the_browser(make_browser, runtime) -> None:
    from sqlalchemy import func, select

    from convergences.db import transaction
    from convergences.security.models import LoginSession

    visitor = await logged_in(make_browser, "agent@bellerive.example")
    first = visitor.cookies.get("cvg_session")
    await visitor.login("agent@bellerive.example")
    assert visitor.cookies.get("cvg_session") != first
    async with transaction(runtime.maker) as db:
        count = await db.scalar(select(func.count()).select_from(LoginSession))
    assert count == 1
