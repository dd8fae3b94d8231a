"""The demo relying parties (``convergences.demo_rp``): what an integrator's application does.

Two levels:

- against a scripted provider (``FakeProvider``, served through ``httpx.MockTransport``): the
  authorization request (PKCE S256, state, nonce), the code exchange (client_secret_basic, verifier),
  every ID-token check (signature, alg, iss, aud, exp, nonce…), back-channel logout-token checks
  (events, no nonce, jti replay…) and RP-initiated logout; plus ``convergences demo-apps`` serving
  both apps and stopping on SIGTERM;
- end to end (slow): the real portal under uvicorn and the demo app under uvicorn, clients
  registered with ``convergences client create``, driven with httpx through the portal's real login
  form, then logged out at the portal: the app receives the back-channel logout.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey
from litestar.testing import AsyncTestClient

from convergences.demo_rp import create_demo_rp
from convergences.demo_rp.app import BACKCHANNEL_EVENT, RelyingParty
from convergences.seed import DEMO_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
OP = "http://op.test"
RP = "http://rp.test"
CLIENT_ID = "demo-bip"
CLIENT_SECRET = "demo-bip-secret"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def s256(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode()).digest())


# --- a scripted provider ------------------------------------------------------------------------------------


@dataclass
class FakeProvider:
    """Discovery, JWKS, token and userinfo endpoints answering from memory; records what it was sent."""

    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True))
    published: list[RSAKey] = field(default_factory=list)
    authorizations: dict[str, dict[str, str]] = field(default_factory=dict)  # code -> authorization query
    token_requests: list[httpx.Request] = field(default_factory=list)
    jwks_fetches: int = 0
    id_token_overrides: dict[str, Any] = field(default_factory=dict)
    sid: str = field(default_factory=lambda: secrets.token_urlsafe(8))
    sub: str = "agent-42"

    def __post_init__(self) -> None:
        self.published = [self.key]

    @property
    def metadata(self) -> dict[str, Any]:
        return {"issuer": OP, "authorization_endpoint": f"{OP}/oidc/authorize", "token_endpoint": f"{OP}/oidc/token",
                "userinfo_endpoint": f"{OP}/oidc/userinfo", "jwks_uri": f"{OP}/oidc/jwks",
                "end_session_endpoint": f"{OP}/oidc/logout", "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"], "backchannel_logout_supported": True,
                "backchannel_logout_session_supported": True}

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=self.metadata)
        if path == "/oidc/jwks":
            self.jwks_fetches += 1
            return httpx.Response(200, json=KeySet(list(self.published)).as_dict())
        if path == "/oidc/token":
            return self.token(request)
        if path == "/oidc/userinfo":
            if request.headers.get("authorization") != "Bearer at-" + self.sid:
                return httpx.Response(401, json={"error": "invalid_token"})
            return httpx.Response(200, json={"sub": self.sub, "name": "Camille Durand", "email": "agent@example.fr",
                                             "employer": {"siret": "21930999900015",
                                                          "name": "Commune de Bellerive-sur-Marne"},
                                             "roles": ["consultation"]})
        return httpx.Response(404)

    def authorize(self, url: str) -> str:
        """What the provider does with the browser's authorization request: a code for the redirect."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        code = secrets.token_urlsafe(12)
        self.authorizations[code] = query
        return code

    def token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests.append(request)
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return httpx.Response(401, json={"error": "invalid_client"})
        query = self.authorizations.pop(form.get("code", ""), None)
        if (query is None or form.get("grant_type") != "authorization_code"
                or form.get("redirect_uri") != query["redirect_uri"]
                or s256(form.get("code_verifier", "")) != query["code_challenge"]):
            return httpx.Response(400, json={"error": "invalid_grant"})
        claims = {"iss": OP, "aud": CLIENT_ID, "sub": self.sub, "sid": self.sid, "iat": int(time.time()),
                  "exp": int(time.time()) + 300, "nonce": query["nonce"], "auth_time": int(time.time()),
                  "amr": ["pwd"], "name": "Camille Durand", "given_name": "Camille", "family_name": "Durand",
                  "email": "agent@example.fr",
                  "employer": {"siret": "21930999900015", "name": "Commune de Bellerive-sur-Marne"},
                  "roles": ["consultation"]}
        claims.update(self.id_token_overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return httpx.Response(200, json={"access_token": "at-" + self.sid, "token_type": "Bearer", "expires_in": 300,
                                         "id_token": self.sign(claims), "scope": "openid profile email"})

    def sign(self, claims: dict[str, Any], key: Any = None, header: dict[str, Any] | None = None) -> str:
        key = key or self.key
        return jwt.encode(header or {"alg": "RS256", "kid": key.kid}, claims, key)

    def logout_token(self, **overrides: Any) -> str:
        claims = {"iss": OP, "aud": CLIENT_ID, "iat": int(time.time()), "exp": int(time.time()) + 120,
                  "jti": secrets.token_urlsafe(12), "events": {BACKCHANNEL_EVENT: {}}, "sub": self.sub,
                  "sid": self.sid}
        claims.update(overrides)
        return self.sign({k: v for k, v in claims.items() if v is not None},
                         header={"alg": "RS256", "kid": self.key.kid, "typ": "logout+jwt"})


@pytest.fixture
def op() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
async def rp(op: FakeProvider) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_demo_rp("BIP (démo)", CLIENT_ID, CLIENT_SECRET, OP, RP, transport=httpx.MockTransport(op.handler))
    async with AsyncTestClient(app=app, base_url=RP) as client:
        yield client


def relying_party(client: AsyncTestClient[Any]) -> RelyingParty:
    return client.app.state.rp  # type: ignore[no-any-return]


async def sign_in(rp: AsyncTestClient[Any], op: FakeProvider) -> httpx.Response:
    """/login -> (the provider authorizes) -> /callback; returns the callback's response."""
    response = await rp.get("/login", follow_redirects=False)
    assert response.status_code == 302, response.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}
    code = op.authorize(response.headers["location"])
    return await rp.get("/callback", params={"code": code, "state": query["state"], "iss": OP},
                        follow_redirects=False)


# --- before signing in ------------------------------------------------------------------------------------


async def test_home_page_logged_out(rp: AsyncTestClient[Any]) -> None:
    response = await rp.get("/")
    assert response.status_code == 200
    assert "BIP (démo)" in response.text
    assert 'href="/login">Se connecter avec Convergences</a>' in response.text
    csp = response.headers["content-security-policy"]
    assert "form-action 'self' http://op.test" in csp and "script-src 'self'" in csp
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert (await rp.get("/static/demo-rp.css")).status_code == 200


async def test_login_builds_an_authorization_request_with_pkce_state_and_nonce(
        rp: AsyncTestClient[Any], op: FakeProvider) -> None:
    response = await rp.get("/login", follow_redirects=False)
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{OP}/oidc/authorize"
    query = parse_qs(location.query)
    assert all(len(v) == 1 for v in query.values()), query
    q = {k: v[0] for k, v in query.items()}
    assert q["response_type"] == "code"
    assert q["client_id"] == CLIENT_ID
    assert q["redirect_uri"] == f"{RP}/callback"
    assert "openid" in q["scope"].split()
    assert q["code_challenge_method"] == "S256"
    assert len(q["state"]) >= 20 and len(q["nonce"]) >= 20
    # The challenge is S256 of the verifier kept server-side, with this state and nonce.
    session = relying_party(rp).sessions[rp.cookies[relying_party(rp).cookie_name]]
    pending = session.pending[q["state"]]
    assert pending.nonce == q["nonce"]
    assert 43 <= len(pending.code_verifier) <= 128
    assert q["code_challenge"] == s256(pending.code_verifier)
    assert "code_verifier" not in q and CLIENT_SECRET not in response.headers["location"]
    # Every login gets its own state, nonce and verifier.
    again = {k: v[0] for k, v in parse_qs(urlsplit((await rp.get("/login", follow_redirects=False))
                                                   .headers["location"]).query).items()}
    assert again["state"] != q["state"] and again["nonce"] != q["nonce"]
    assert again["code_challenge"] != q["code_challenge"]


async def test_login_when_the_portal_is_down_says_so() -> None:
    app = create_demo_rp("BIP (démo)", CLIENT_ID, CLIENT_SECRET, OP, RP,
                         transport=httpx.MockTransport(lambda request: httpx.Response(503)))
    async with AsyncTestClient(app=app, base_url=RP) as client:
        response = await client.get("/login", follow_redirects=False)
    assert response.status_code == 503
    assert "injoignable" in response.text


# --- signing in ---------------------------------------------------------------------------------------------


async def test_sign_in_shows_the_person_employer_roles_and_every_claim(
        rp: AsyncTestClient[Any], op: FakeProvider) -> None:
    await rp.get("/login", follow_redirects=False)
    before = rp.cookies[relying_party(rp).cookie_name]
    response = await sign_in(rp, op)
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert rp.cookies[relying_party(rp).cookie_name] != before  # a new session once signed in
    token_request = op.token_requests[-1]
    assert token_request.headers["authorization"].startswith("Basic ")
    assert "client_secret" not in token_request.content.decode()

    page = unescape((await rp.get("/")).text)
    assert "Bonjour Camille Durand" in page
    assert "Commune de Bellerive-sur-Marne" in page and "21930999900015" in page
    assert "<li>consultation</li>" in page
    for claim in ("iss", "aud", "sub", "sid", "nonce", "exp", "iat", "auth_time", "amr", "name", "given_name",
                  "family_name", "email", "employer", "roles"):
        assert f"<code>{claim}</code>" in page, claim
    assert op.sid in page
    assert "Se déconnecter" in page
    session = relying_party(rp).sessions[rp.cookies[relying_party(rp).cookie_name]]
    assert session.sid == op.sid and session.userinfo["sub"] == op.sub


async def test_callback_with_an_unknown_state_is_refused(rp: AsyncTestClient[Any], op: FakeProvider) -> None:
    await rp.get("/login", follow_redirects=False)
    response = await rp.get("/callback", params={"code": "x", "state": "forged"}, follow_redirects=False)
    assert response.status_code == 400
    assert "expiré" in response.text
    assert op.token_requests == []


async def test_a_state_is_used_once(rp: AsyncTestClient[Any], op: FakeProvider) -> None:
    login = await rp.get("/login", follow_redirects=False)
    state = parse_qs(urlsplit(login.headers["location"]).query)["state"][0]
    code = op.authorize(login.headers["location"])
    first = await rp.get("/callback", params={"code": code, "state": state}, follow_redirects=False)
    assert first.status_code == 303
    again = await rp.get("/callback", params={"code": code, "state": state}, follow_redirects=False)
    assert again.status_code == 400


async def test_a_provider_error_is_shown(rp: AsyncTestClient[Any], op: FakeProvider) -> None:
    login = await rp.get("/login", follow_redirects=False)
    state = parse_qs(urlsplit(login.headers["location"]).query)["state"][0]
    response = await rp.get("/callback", params={"error": "access_denied", "state": state,
                                                 "error_description": "Aucun droit sur cette application"})
    assert response.status_code == 403
    assert "Aucun droit sur cette application" in unescape(response.text)
    assert op.token_requests == []


def _other_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)


BAD_ID_TOKENS = {
    "wrong nonce": {"nonce": "not-the-one-sent"},
    "no nonce": {"nonce": None},
    "wrong audience": {"aud": "another-client"},
    "two audiences, no azp": {"aud": [CLIENT_ID, "another-client"]},
    "wrong azp": {"azp": "another-client"},
    "wrong issuer": {"iss": "http://evil.test"},
    "expired": {"exp": int(time.time()) - 3600},
    "no exp": {"exp": None},
    "issued in the future": {"iat": int(time.time()) + 3600},
    "no sub": {"sub": None},
    "at_hash mismatch": {"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"},
}


@pytest.mark.parametrize("overrides", BAD_ID_TOKENS.values(), ids=BAD_ID_TOKENS.keys())
async def test_invalid_id_tokens_are_refused(rp: AsyncTestClient[Any], op: FakeProvider,
                                             overrides: dict[str, Any]) -> None:
    op.id_token_overrides = overrides
    response = await sign_in(rp, op)
    assert response.status_code == 502, response.text
    assert "jeton d'identité" in unescape(response.text)
    assert "Bonjour" not in (await rp.get("/")).text


@pytest.mark.parametrize("forgery", ["other key", "hs256 with the client secret", "alg none"])
async def test_forged_id_token_signatures_are_refused(rp: AsyncTestClient[Any], op: FakeProvider,
                                                      forgery: str) -> None:
    real_token = op.token

    def forged(request: httpx.Request) -> httpx.Response:
        response = real_token(request)
        body = response.json()
        if "id_token" not in body:
            return response
        claims = json.loads(base64.urlsafe_b64decode(body["id_token"].split(".")[1] + "=="))
        if forgery == "other key":
            body["id_token"] = op.sign(claims, key=_other_key())
        elif forgery == "hs256 with the client secret":
            body["id_token"] = jwt.encode({"alg": "HS256", "kid": "k1"}, claims,
                                          OctKey.import_key(CLIENT_SECRET.encode() * 3))
        else:
            body["id_token"] = (_b64(b'{"alg":"none","kid":"k1"}') + "." + _b64(json.dumps(claims).encode()) + ".")
        return httpx.Response(200, json=body)

    op.token = forged  # type: ignore[method-assign]
    response = await sign_in(rp, op)
    assert response.status_code == 502
    assert "Bonjour" not in (await rp.get("/")).text


async def test_a_rotated_signing_key_is_fetched_once(rp: AsyncTestClient[Any], op: FakeProvider) -> None:
    assert (await sign_in(rp, op)).status_code == 303
    fetches = op.jwks_fetches
    op.key = RSAKey.generate_key(2048, parameters={"kid": "k2"}, private=True)
    op.published.append(op.key)
    relying_party(rp)._keys_fetched_at -= 60  # the refresh floor (10 s) has passed
    assert (await sign_in(rp, op)).status_code == 303
    assert op.jwks_fetches == fetches + 1


# --- logging out ------------------------------------------------------------------------------------------------


async def test_backchannel_logout_ends_the_session(rp: AsyncTestClient[Any], op: FakeProvider) -> None:
    await sign_in(rp, op)
    token = op.logout_token()
    response = await rp.post("/backchannel-logout", data={"logout_token": token})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    page = unescape((await rp.get("/")).text)
    assert "Bonjour" not in page
    assert "Votre session a été fermée par le portail Convergences" in page
    assert "Se connecter avec Convergences" in page
    # The same token again is a replay.
    assert (await rp.post("/backchannel-logout", data={"logout_token": token})).status_code == 400


async def test_backchannel_logout_of_another_session_leaves_this_one(rp: AsyncTestClient[Any],
                                                                     op: FakeProvider) -> None:
    await sign_in(rp, op)
    response = await rp.post("/backchannel-logout", data={"logout_token": op.logout_token(sid="another-sid")})
    assert response.status_code == 200
    assert "Bonjour Camille Durand" in (await rp.get("/")).text


async def test_backchannel_logout_by_sub_alone_ends_every_session_of_the_person(
        rp: AsyncTestClient[Any], op: FakeProvider) -> None:
    await sign_in(rp, op)
    assert (await rp.post("/backchannel-logout", data={"logout_token": op.logout_token(sid=None)})).status_code == 200
    assert "Bonjour" not in (await rp.get("/")).text


BAD_LOGOUT_TOKENS = {
    "no events": {"events": None},
    "other event": {"events": {"http://schemas.openid.net/event/other": {}}},
    "event not an object": {"events": {BACKCHANNEL_EVENT: "yes"}},
    "with a nonce": {"nonce": "n"},
    "wrong audience": {"aud": "another-client"},
    "wrong issuer": {"iss": "http://evil.test"},
    "no jti": {"jti": None},
    "no iat": {"iat": None},
    "expired": {"exp": int(time.time()) - 3600},
    "old, no exp": {"exp": None, "iat": int(time.time()) - 3600},
    "neither sub nor sid": {"sub": None, "sid": None},
}


@pytest.mark.parametrize("overrides", BAD_LOGOUT_TOKENS.values(), ids=BAD_LOGOUT_TOKENS.keys())
async def test_invalid_logout_tokens_are_refused(rp: AsyncTestClient[Any], op: FakeProvider,
                                                 overrides: dict[str, Any]) -> None:
    await sign_in(rp, op)
    response = await rp.post("/backchannel-logout", data={"logout_token": op.logout_token(**overrides)})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "Bonjour Camille Durand" in (await rp.get("/")).text


async def test_logout_tokens_need_the_providers_signature(rp: AsyncTestClient[Any], op: FakeProvider) -> None:
    await sign_in(rp, op)
    claims = {"iss": OP, "aud": CLIENT_ID, "iat": int(time.time()), "jti": "j", "sid": op.sid,
              "events": {BACKCHANNEL_EVENT: {}}}
    forged = op.sign(claims, key=_other_key())
    assert (await rp.post("/backchannel-logout", data={"logout_token": forged})).status_code == 400
    assert (await rp.post("/backchannel-logout", data={})).status_code == 400
    # An ID token is not a logout token (no events, has a nonce).
    assert "Bonjour" in (await rp.get("/")).text


async def test_rp_initiated_logout_goes_to_the_portal_and_back(rp: AsyncTestClient[Any], op: FakeProvider) -> None:
    await sign_in(rp, op)
    page = (await rp.get("/")).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    assert (await rp.post("/logout", data={"csrf": "wrong"})).status_code == 403
    id_token = relying_party(rp).sessions[rp.cookies[relying_party(rp).cookie_name]].id_token
    response = await rp.post("/logout", data={"csrf": csrf.group(1)}, follow_redirects=False)
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{OP}/oidc/logout"
    q = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert q["id_token_hint"] == id_token
    assert q["post_logout_redirect_uri"] == f"{RP}/"
    assert q["client_id"] == CLIENT_ID and len(q["state"]) >= 16
    # The portal sends the browser back with the state.
    back = unescape((await rp.get("/", params={"state": q["state"]})).text)
    assert "Vous êtes déconnecté(e) de BIP (démo) et du portail Convergences" in back
    assert "Bonjour" not in back


# --- the command ------------------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def test_demo_apps_command_serves_both_apps_and_stops_on_sigterm(tmp_path: Path) -> None:
    ports = free_port(), free_port()
    env = {**os.environ, "CONVERGENCES_DEMO_BIP_PORT": str(ports[0]),
           "CONVERGENCES_DEMO_NET_COTISATIONS_PORT": str(ports[1]),
           "CONVERGENCES_BASE_URL": "http://127.0.0.1:9", "CONVERGENCES_LOG_LEVEL": "warning"}
    log = (tmp_path / "demo-apps.log").open("wb")
    process = subprocess.Popen([_bin("convergences"), "demo-apps"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        pages = {}
        deadline = time.monotonic() + 20
        while len(pages) < 2 and time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "demo-apps.log").read_text()
            for port in ports:
                try:
                    pages[port] = httpx.get(f"http://127.0.0.1:{port}/", timeout=1).text
                except httpx.HTTPError:
                    time.sleep(0.1)
        assert "BIP (démo)" in pages[ports[0]]
        assert "Net Cotisations (démo)" in pages[ports[1]]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --- end to end with the real portal ------------------------------------------------------------------------


class ThreadedServer:
    """A demo app under uvicorn in a thread of the test process (its state stays inspectable)."""

    def __init__(self, app: Any, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the demo app did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Portal:
    url: str
    env: dict[str, str]

    def register(self, application: str, rp_url: str) -> tuple[str, str]:
        done = subprocess.run(
            [_bin("convergences"), "client", "create", "--application", application,
             "--redirect-uri", f"{rp_url}/callback", "--backchannel-logout-uri", f"{rp_url}/backchannel-logout",
             "--post-logout-redirect-uri", f"{rp_url}/", "--alg", "RS256"],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        data = json.loads(done.stdout.strip().splitlines()[-1])
        return data["client_id"], data["client_secret"]


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    from tests.browser.live import LiveServer

    server = LiveServer(tmp_path_factory.mktemp("portal"))
    # One environment for the server and the CLI: env() draws a fresh secret key each call, and client
    # secrets are stored keyed with it.
    env = server.env()
    server.env = lambda: env  # type: ignore[method-assign]
    # Back-channel logouts are delivered from the portal process: no mail server needed here.
    server.start()
    try:
        yield Portal(server.url, env)
    finally:
        server.stop()


def follow(client: httpx.Client, response: httpx.Response, limit: int = 10) -> httpx.Response:
    for _ in range(limit):
        if response.status_code not in (301, 302, 303, 307, 308):
            return response
        response = client.get(httpx.URL(str(response.url)).join(response.headers["location"]))
    raise AssertionError("too many redirects")


def portal_login(client: httpx.Client, page: httpx.Response, email: str) -> httpx.Response:
    """On the portal's login form (reached through /oidc/authorize): post the credentials, follow."""
    assert page.status_code == 200 and 'name="password"' in page.text, page.text[:500]
    next_field = re.search(r'name="next" value="([^"]*)"', page.text)
    assert next_field, "no next field in the login form"
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(str(page.url)))
    response = client.post(f"{origin}/login", data={
        "email": email, "password": DEMO_PASSWORD, "next": unescape(next_field.group(1)),
        "_csrf_token": client.cookies.get("cvg_csrf")})
    return follow(client, response)


def wait_for(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.mark.slow
def test_end_to_end_sign_in_then_logout_at_the_portal_reaches_both_apps(portal: Portal) -> None:
    bip_port, net_port = free_port(), free_port()
    bip_url, net_url = f"http://127.0.0.1:{bip_port}", f"http://127.0.0.1:{net_port}"
    bip = create_demo_rp("BIP (démo)", *portal.register("bip", bip_url), portal.url, bip_url)
    net = create_demo_rp("Net Cotisations (démo)", *portal.register("net-cotisations", net_url), portal.url,
                         net_url)
    with ThreadedServer(bip, bip_port), ThreadedServer(net, net_port), httpx.Client(timeout=20) as browser:
        # BIP: not signed in at the portal yet, so its login form.
        login_page = follow(browser, browser.get(f"{bip_url}/login"))
        assert str(login_page.url).startswith(portal.url + "/login")
        page = portal_login(browser, login_page, "agent@bellerive.example")
        assert str(page.url) == f"{bip_url}/", (page.url, page.text[:1000])
        text = unescape(page.text)
        assert "Bonjour " in text
        assert "agent@bellerive.example" in text
        assert "Commune de Bellerive-sur-Marne" in text and "21930999900015" in text
        for claim in ("sub", "sid", "auth_time", "amr", "employer", "roles", "email", "name"):
            assert f"<code>{claim}</code>" in text, claim
        bip_session = next(s for s in bip.state.rp.sessions.values() if s.logged_in)
        assert bip_session.sid and bip_session.userinfo.get("sub") == bip_session.sub

        # Net Cotisations: single sign-on, no password asked; the agent's role there is shown.
        page = follow(browser, browser.get(f"{net_url}/login"))
        assert str(page.url) == f"{net_url}/", (page.url, page.text[:1000])
        text = unescape(page.text)
        assert "Bonjour " in text and "<li>consultation</li>" in text
        net_session = next(s for s in net.state.rp.sessions.values() if s.logged_in)
        # One portal session; the provider may give each application its own sid for it.
        assert net_session.sid and net_session.sub == bip_session.sub

        # Log out at the portal (its own logout button): both apps are told over the back channel.
        csrf = browser.cookies.get("cvg_csrf")
        response = browser.post(f"{portal.url}/logout", data={"_csrf_token": csrf})
        assert response.status_code in (200, 303), response.text[:500]
        assert wait_for(lambda: "Votre session a été fermée par le portail" in browser.get(f"{bip_url}/").text)
        assert wait_for(lambda: "Votre session a été fermée par le portail" in browser.get(f"{net_url}/").text)
        assert "Bonjour" not in browser.get(f"{bip_url}/").text
        assert not any(s.logged_in for s in bip.state.rp.sessions.values())
        assert not any(s.logged_in for s in net.state.rp.sessions.values())


@pytest.mark.slow
def test_end_to_end_rp_initiated_logout(portal: Portal) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_demo_rp("BIP (démo)", *portal.register("bip", url), portal.url, url)
    with ThreadedServer(app, port), httpx.Client(timeout=20) as browser:
        page = portal_login(browser, follow(browser, browser.get(f"{url}/login")), "agent@bellerive.example")
        assert "Bonjour " in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        response = follow(browser, browser.post(f"{url}/logout", data={"csrf": csrf.group(1)}))
        # The portal may ask for confirmation (a form posted back to it) before sending the browser back.
        for _ in range(2):
            if str(response.url).startswith(url):
                break
            form = re.search(r'<form[^>]*method="post"[^>]*action="([^"]+)"', response.text)
            assert form, (response.url, response.text[:1500])
            fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', response.text))
            fields = {k: unescape(v) for k, v in fields.items()}
            fields["_csrf_token"] = browser.cookies.get("cvg_csrf") or fields.get("_csrf_token", "")
            response = follow(browser, browser.post(httpx.URL(str(response.url)).join(unescape(form.group(1))),
                                                    data=fields))
        assert str(response.url).startswith(f"{url}/?"), response.url
        assert "Vous êtes déconnecté(e) de BIP (démo) et du portail Convergences" in unescape(response.text)
        # The portal session is over too.
        services = browser.get(f"{portal.url}/services")
        assert services.status_code in (302, 303) and "/login" in services.headers["location"]


@pytest.mark.slow
@pytest.mark.browser
def test_in_chromium_signing_in_from_the_app_lands_back_in_the_app(portal: Portal) -> None:
    from tests.browser.live import CHROMIUM, CHROMIUM_ARGS

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_demo_rp("BIP (démo)", *portal.register("bip", url), portal.url, url)
    # Started and stopped within the test: a live sync Playwright would upset the asyncio tests after it.
    with ThreadedServer(app, port), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{url}/")
            page.get_by_role("link", name="Se connecter avec Convergences").click()
            page.get_by_label("Adresse électronique professionnelle").fill("agent@bellerive.example")
            page.get_by_label("Mot de passe").fill(DEMO_PASSWORD)
            page.get_by_role("button", name="Se connecter", exact=True).click()
            page.wait_for_url(f"{url}/", timeout=10_000)
            assert "Commune de Bellerive-sur-Marne" in page.inner_text("main")
        finally:
            browser.close()
