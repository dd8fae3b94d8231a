"""Back-channel logout (OIDC Back-Channel Logout 1.0): queued in the same transaction as the change that
ends the person's sessions, delivered to the application's real HTTP endpoint, retried from the durable
outbox when the application is down (a restart loses none)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from joserfc import jwk, jwt
from sqlalchemy import select, update

from convergences.db import transaction, utcnow
from convergences.oidc.models import LogoutDelivery
from convergences.oidc.services import BACKCHANNEL_EVENT, LogoutOutbox, register_client
from convergences.seed import DEMO_PASSWORD
from tests.helpers import REFERENT, app_id, employer_id, logged_in, membership_id


class Receiver:
    """An application's back-channel logout endpoint: a real HTTP server on loopback."""

    def __init__(self) -> None:
        received: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                received.append(form["logout_token"][0])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/backchannel-logout"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


async def _sign_in_to_application(browser, client_id: str, secret: str, email: str) -> dict:
    query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": "https://bip.test/cb",
                       "scope": "openid", "state": "s"})
    first = await browser.get("/oidc/authorize?" + query)
    next_url = parse_qs(urlsplit(first.headers["location"]).query)["next"][0]
    await browser.post("/login", {"email": email, "password": DEMO_PASSWORD, "next": next_url})
    back = await browser.get(next_url)
    code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
    token = await browser.client.post("/oidc/token", data={"grant_type": "authorization_code", "code": code,
                                                           "redirect_uri": "https://bip.test/cb"},
                                      auth=(client_id, secret))
    assert token.status_code == 200, token.text
    return token.json()


async def _wait_delivered(runtime, count: int) -> None:
    import asyncio

    for _ in range(100):
        async with transaction(runtime.maker) as db:
            done = len((await db.scalars(select(LogoutDelivery).where(LogoutDelivery.delivered_at.is_not(None))))
                       .all())
        if done >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("back-channel logout not delivered")


async def test_portal_logout_sends_a_valid_logout_token(make_browser, runtime, receiver: Receiver) -> None:
    client_id, secret = await register_client(runtime, application_slug="bip", redirect_uris=["https://bip.test/cb"],
                                              backchannel_logout_uri=receiver.uri, alg="RS256")
    agent = await make_browser()
    tokens = await _sign_in_to_application(agent, client_id, secret, "agent@bellerive.example")
    keyset = jwk.KeySet.import_key_set((await agent.client.get("/oidc/jwks")).json())
    id_token = jwt.decode(tokens["id_token"], keyset).claims
    await agent.logout()
    await _wait_delivered(runtime, 1)
    assert len(receiver.received) == 1
    logout = jwt.decode(receiver.received[0], keyset)
    assert logout.header["typ"] == "logout+jwt"
    claims = logout.claims
    assert claims["aud"] == client_id and claims["sid"] == id_token["sid"] and claims["sub"] == id_token["sub"]
    assert BACKCHANNEL_EVENT in claims["events"] and "nonce" not in claims and claims["jti"]
    # The application's tokens died with the session.
    info = await agent.client.get("/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 401


async def test_suspension_and_lost_grant_log_the_agent_out_of_the_application(make_browser, runtime,
                                                                               receiver: Receiver) -> None:
    client_id, secret = await register_client(runtime, application_slug="bip", redirect_uris=["https://bip.test/cb"],
                                              backchannel_logout_uri=receiver.uri)
    agent = await make_browser()
    await _sign_in_to_application(agent, client_id, secret, "agent@bellerive.example")
    eid, mid = await employer_id(runtime), await membership_id(runtime, "agent@bellerive.example")
    bip = await app_id(runtime, "bip")
    referent = await logged_in(make_browser, REFERENT)
    response = await referent.post(f"/employeurs/{eid}/agents/{mid}/droits/{bip}", {}, htmx=True)
    assert response.status_code == 200
    await _wait_delivered(runtime, 1)
    assert len(receiver.received) == 1

    # Grant back, sign in again, then suspension logs out of the application too.
    await referent.post(f"/employeurs/{eid}/agents/{mid}/droits/{bip}", {"enabled": "1"}, htmx=True)
    agent = await make_browser()
    await _sign_in_to_application(agent, client_id, secret, "agent@bellerive.example")
    response = await referent.post(f"/employeurs/{eid}/agents/{mid}/suspendre")
    assert response.status_code == 303
    await _wait_delivered(runtime, 2)
    assert len(receiver.received) == 2


async def test_undelivered_logouts_are_retried_from_the_outbox(make_browser, runtime) -> None:
    down = Receiver()  # bound but not serving yet: the application is down
    port = down.port
    down.server.server_close()
    uri = f"http://127.0.0.1:{port}/backchannel-logout"
    client_id, secret = await register_client(runtime, application_slug="bip", redirect_uris=["https://bip.test/cb"],
                                              backchannel_logout_uri=uri)
    agent = await make_browser()
    await _sign_in_to_application(agent, client_id, secret, "agent@bellerive.example")
    await agent.logout()
    outbox = LogoutOutbox(runtime)
    import asyncio

    for _ in range(100):  # the portal tries at once in the background; or this call does
        await outbox.deliver_pending()
        async with transaction(runtime.maker) as db:
            row = await db.scalar(select(LogoutDelivery))
            if row is not None and row.attempts >= 1:
                break
        await asyncio.sleep(0.05)
    async with transaction(runtime.maker) as db:
        row = await db.scalar(select(LogoutDelivery))
        assert row is not None and row.delivered_at is None and row.attempts >= 1 and row.last_error
        # A "restart" later: the row is still there; its retry time comes.
        await db.execute(update(LogoutDelivery).values(next_attempt_at=utcnow()))
    up = Receiver.__new__(Receiver)
    Receiver.__init__(up)
    up.server.server_close()
    from http.server import HTTPServer as _Server

    up.server = _Server(("127.0.0.1", port), up.server.RequestHandlerClass)
    up.thread = threading.Thread(target=up.server.serve_forever, daemon=True)
    up.start()
    try:
        assert await outbox.deliver_pending() == 1
        assert len(up.received) == 1
        assert await outbox.deliver_pending() == 0  # delivered once, never twice
    finally:
        up.stop()
