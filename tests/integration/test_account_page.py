"""« Mon compte »: the hub, the sessions page (see, end one, end the others) and administrators ending a
person's sessions everywhere, applications included (back-channel logout)."""

from __future__ import annotations

import re

from sqlalchemy import select

from convergences.oidc.models import RpSession
from convergences.oidc.services import register_client
from convergences.runtime import Runtime
from convergences.security.models import LoginSession
from tests.credentials_support import events, session_count
from tests.helpers import REFERENT, SIVOM, employer_id, logged_in, membership_id, rows
from tests.integration.test_backchannel import Receiver, _sign_in_to_application, _wait_delivered, receiver

__all__ = ["receiver"]  # the fixture, imported for these tests
AGENT = "agent@bellerive.example"


async def test_every_logged_in_page_links_to_the_account_hub(make_browser) -> None:
    agent = await logged_in(make_browser, AGENT)
    services = await agent.get("/services")
    assert 'href="/compte"' in services.text and "Mon compte" in services.text
    hub = await agent.get("/compte")
    assert hub.status_code == 200 and "<h1>Mon compte</h1>" in hub.text and AGENT in hub.text
    assert "Julie Moreau" in hub.text
    for link in ("/compte/mot-de-passe", "/compte/adresse", "/compte/sessions"):
        assert f'href="{link}"' in hub.text
    assert 'aria-current="page">Mon compte' in hub.text
    anonymous = await make_browser()
    assert (await anonymous.get("/compte")).headers["location"].startswith("/login")


async def test_sessions_page_lists_and_ends_sessions(make_browser, runtime: Runtime) -> None:
    laptop = await make_browser()
    await laptop.post("/login", {"email": AGENT, "password": "Convergences demo 2026 !"},
                      headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0) Gecko/20100101 Firefox/128.0"})
    phone = await make_browser()
    await phone.post("/login", {"email": AGENT, "password": "Convergences demo 2026 !"},
                     headers={"User-Agent": "Mozilla/5.0 (Linux; Android 14) Chrome/126.0 Mobile Safari/537.36"})
    tablet = await logged_in(make_browser, AGENT)
    page = await laptop.get("/compte/sessions")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text))
    assert "Firefox sous Windows (cette session)" in text and "Chrome sous Android" in text
    assert text.count("Déconnecter cette session") == 3 and "Me déconnecter partout ailleurs" in text
    # No session id (the cookie's digest) is ever printed: only opaque handles.
    ids = [s.id for s in await rows(runtime, select(LoginSession))]
    assert not [i for i in ids if i in page.text]
    phone_handle = [h for h in _handles(page.text) if h != _current_handle(page.text)][0]
    response = await laptop.post("/compte/sessions/deconnecter", {"session": phone_handle})
    assert response.status_code == 303
    assert await session_count(runtime, AGENT) == 2
    # Another account's handle ends nothing.
    other = await logged_in(make_browser, REFERENT)
    handle = _current_handle((await laptop.get("/compte/sessions")).text)
    assert (await other.post("/compte/sessions/deconnecter", {"session": handle})).status_code == 303
    assert await session_count(runtime, AGENT) == 2
    # "Me déconnecter partout ailleurs" keeps this session only.
    assert (await laptop.post("/compte/sessions/autres")).status_code == 303
    assert await session_count(runtime, AGENT) == 1
    assert (await laptop.get("/compte/sessions")).status_code == 200
    assert (await tablet.get("/compte/sessions")).status_code in (302, 303)
    # Ending this very session logs out.
    handle = _current_handle((await laptop.get("/compte/sessions")).text)
    out = await laptop.post("/compte/sessions/deconnecter", {"session": handle})
    assert out.headers["location"] == "/login" and await session_count(runtime, AGENT) == 0
    assert [e.action for e in await events(runtime, "account:session:end")] == ["account:session:end"] * 2
    assert len(await events(runtime, "account:sessions:end_others")) == 1


def _handles(html: str) -> list[str]:
    return re.findall(r'name="session" value="([0-9a-f]+)"', html)


def _current_handle(html: str) -> str:
    row = [r for r in html.split("<tr>") if "(cette session)" in r][0]
    found = re.search(r'name="session" value="([0-9a-f]+)"', row)
    assert found
    return found.group(1)


async def test_referent_ends_an_agents_sessions_everywhere(make_browser, runtime: Runtime,
                                                           receiver: Receiver) -> None:
    client_id, secret = await register_client(runtime, application_slug="bip", redirect_uris=["https://bip.test/cb"],
                                              backchannel_logout_uri=receiver.uri)
    agent = await make_browser()
    await _sign_in_to_application(agent, client_id, secret, AGENT)
    second = await logged_in(make_browser, AGENT)
    assert await session_count(runtime, AGENT) == 2
    referent = await logged_in(make_browser, REFERENT)
    eid, mid = await employer_id(runtime), await membership_id(runtime, AGENT)
    assert "Déconnecter partout" in (await referent.get(f"/employeurs/{eid}/agents/{mid}")).text
    response = await referent.post(f"/employeurs/{eid}/agents/{mid}/deconnecter")
    assert response.status_code == 303
    assert await session_count(runtime, AGENT) == 0
    assert (await second.get("/services")).status_code in (302, 303)
    await _wait_delivered(runtime, 1)
    assert len(receiver.received) == 1
    assert all(r.ended_at is not None for r in await rows(runtime, select(RpSession)))
    event = (await events(runtime, "account:sessions:end_all"))[-1]
    assert event.employer_id == eid and event.target_id == mid and event.after == {"sessions": 2}


async def test_ending_sessions_respects_employers_and_roles(make_browser, runtime: Runtime) -> None:
    target = await logged_in(make_browser, "technique@coteaux.example")
    colleague = await logged_in(make_browser, "paie@bellerive.example")
    referent = await logged_in(make_browser, REFERENT)
    bellerive, sivom = await employer_id(runtime), await employer_id(runtime, SIVOM)
    other = await membership_id(runtime, "technique@coteaux.example", SIVOM)
    peer = await membership_id(runtime, "paie@bellerive.example")
    assert (await referent.post(f"/employeurs/{sivom}/agents/{other}/deconnecter")).status_code == 403
    assert (await referent.post(f"/employeurs/{bellerive}/agents/{other}/deconnecter")).status_code == 404
    assert (await referent.post(f"/employeurs/{bellerive}/agents/{peer}/deconnecter")).status_code == 403
    assert (await target.get("/services")).status_code == 200
    assert (await colleague.get("/services")).status_code == 200
    # The CIG administrator may, for anyone.
    admin = await logged_in(make_browser, "admin@cig-demo.fr")
    assert (await admin.post(f"/employeurs/{bellerive}/agents/{peer}/deconnecter")).status_code == 303
    assert (await colleague.get("/services")).status_code in (302, 303)


async def test_ending_other_sessions_needs_a_recent_authentication(make_browser, runtime: Runtime) -> None:
    """ASVS 7.5.2: the person terminates sessions having re-entered their credentials (step-up within
    10 minutes); ending the current session is a plain logout and needs none."""
    from tests.credentials_support import age_authentication

    first = await logged_in(make_browser, AGENT)
    second = await logged_in(make_browser, AGENT)
    page = (await first.get("/compte/sessions")).text
    other = [h for h in _handles(page) if h != _current_handle(page)][0]
    await age_authentication(runtime, AGENT)
    before = await session_count(runtime, AGENT)
    for path, data in (("/compte/sessions/autres", {}), ("/compte/sessions/deconnecter", {"session": other})):
        response = await first.post(path, data)
        assert response.status_code == 303
        assert response.headers["location"] == "/compte/reauthentification?next=%2Fcompte%2Fsessions"
    assert await session_count(runtime, AGENT) == before
    # The current session can always be ended.
    mine = _current_handle((await second.get("/compte/sessions")).text)
    response = await second.post("/compte/sessions/deconnecter", {"session": mine})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert await session_count(runtime, AGENT) == before - 1
