"""OIDC provider tests: registered clients, and a relying party driven through the REAL login form.

Third-party code checks what the provider issues: Authlib's OAuth 2 client builds the authorization
URLs (state, PKCE S256) and exchanges codes (client authentication, state check, error parsing);
Authlib's own JOSE implementation verifies the ID token signature against the JWKS the app publishes,
and ``authlib.oidc.core.CodeIDToken`` validates its claims (iss, aud, exp, iat, nonce, azp, at_hash).

The app runs inside Litestar's test client, so the relying party's host (``bip.test``) is never
contacted: the flow stops at the redirect to it and reads the ``Location`` header.

These tests run on SQLite only (``db_url`` overridden below); the few marked ``both_backends``
run on PostgreSQL too.
"""

from __future__ import annotations

import html
import re
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest
from httpx import AsyncBaseTransport, AsyncClient, Request, Response
from litestar import Litestar
from litestar.testing import AsyncTestClient

from convergences.runtime import Runtime
from convergences.seed import DEMO_PASSWORD
from tests.conftest import database_url
from tests.helpers import Browser, totp_code

with warnings.catch_warnings():
    # Authlib 1.9 warns about its own modules (httpx -> httpx2, authlib.jose -> joserfc); both still work.
    warnings.simplefilter("ignore")
    from authlib.common.security import generate_token
    from authlib.integrations.httpx_client import AsyncOAuth2Client
    from authlib.jose import JsonWebKey, JsonWebToken
    from authlib.oidc.core import CodeIDToken

ISSUER = "http://testserver.local"
AUTHORIZE = f"{ISSUER}/oidc/authorize"
TOKEN = f"{ISSUER}/oidc/token"
USERINFO = f"{ISSUER}/oidc/userinfo"
REVOKE = f"{ISSUER}/oidc/revoke"
INTROSPECT = f"{ISSUER}/oidc/introspect"
LOGOUT = f"{ISSUER}/oidc/logout"
JWKS = f"{ISSUER}/oidc/jwks"
DISCOVERY = f"{ISSUER}/.well-known/openid-configuration"

REDIRECT_URI = "https://bip.test/callback"
PUBLIC_REDIRECT_URI = "https://bip.test/spa/callback"
POST_LOGOUT_URI = "https://bip.test/au-revoir"

AGENT = "agent@bellerive.example"          # bip, site, net-cotisations (consultation) at Bellerive
MULTI = "secretariat@coteaux.example"      # site at SIVOM and at Val-Fleuri; bip at Val-Fleuri only
NO_GRANT = "maire@bellerive.example"       # Bellerive authority, no application right


# --- backends ---------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite only for the OIDC modules (PostgreSQL would double their time for little gain)."""
    return database_url(request, tmp_path)


# Put on the few tests that must also run on PostgreSQL.
both_backends = pytest.mark.parametrize(
    "db_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)


# --- registered clients -----------------------------------------------------------------------

@dataclass
class RP:
    """A registered relying party."""

    client_id: str
    client_secret: str | None
    redirect_uri: str
    alg: str = "RS256"
    application: str = "bip"
    public: bool = False
    post_logout_redirect_uri: str | None = None

    @property
    def auth_method(self) -> str:
        return "none" if self.public else "client_secret_basic"


Register = Callable[..., Awaitable[RP]]


@pytest.fixture
def register(runtime: Runtime) -> Register:
    """Register a client through the provider's own service (``register_client``)."""

    async def _register(application_slug: str = "bip", redirect_uris: list[str] | None = None, *,
                        public: bool = False, alg: str = "RS256", allow_refresh: bool = True,
                        claims: list[str] | None = None, post_logout_redirect_uris: list[str] | None = None,
                        backchannel_logout_uri: str | None = None, pairwise: bool = False,
                        name: str | None = None) -> RP:
        from convergences.oidc.services import register_client

        uris = redirect_uris or [REDIRECT_URI]
        logout_uris = post_logout_redirect_uris if post_logout_redirect_uris is not None else [POST_LOGOUT_URI]
        client_id, secret = await register_client(
            runtime, application_slug=application_slug, redirect_uris=uris, public=public,
            backchannel_logout_uri=backchannel_logout_uri, post_logout_redirect_uris=logout_uris, alg=alg,
            allow_refresh=allow_refresh, claims=["employer", "roles"] if claims is None else claims,
            pairwise=pairwise, name=name)
        assert client_id
        assert (secret is None) == public, "a public client has no secret; a confidential one has one"
        return RP(client_id=client_id, client_secret=secret, redirect_uri=uris[0], alg=alg,
                  application=application_slug, public=public,
                  post_logout_redirect_uri=logout_uris[0] if logout_uris else None)

    return _register


@pytest.fixture
async def bip(register: Register) -> RP:
    """The conformance client: confidential, RS256, client_secret_basic, refresh allowed."""
    return await register("bip", [REDIRECT_URI, "https://bip.test/other-callback"])


@pytest.fixture
async def public_rp(register: Register) -> RP:
    return await register("bip", [PUBLIC_REDIRECT_URI], public=True)


# --- the relying party and the browser ----------------------------------------------------------

class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "get").lower(),
                               "inputs": []})
        elif tag in ("input", "button") and self.forms:
            self.forms[-1]["inputs"].append(a | {"_tag": tag})


def forms(page: str) -> list[dict[str, Any]]:
    parser = _Forms()
    parser.feed(page)
    return parser.forms


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def is_local(url: str) -> bool:
    parts = urlsplit(urljoin(ISSUER + "/", url))
    return f"{parts.scheme}://{parts.netloc}" == ISSUER


def local_path(url: str) -> str:
    parts = urlsplit(urljoin(ISSUER + "/", url))
    return parts.path + ("?" + parts.query if parts.query else "")


@dataclass
class Flow:
    """One trip through the authorization endpoint, as a browser makes it."""

    rp: RP
    visitor: Browser
    state: str | None
    nonce: str | None
    verifier: str | None
    url: str
    logins: int = 0                      # how many times the login form was filled in
    choices: int = 0                     # how many times the employer choice page was answered
    pages: list[str] = field(default_factory=list)
    location: str | None = None          # the redirect to the relying party, when there is one
    final: Response | None = None        # the last response from the provider

    @property
    def params(self) -> dict[str, str]:
        assert self.location is not None, f"no redirect to the client; last page: {self.describe()}"
        parts = urlsplit(self.location)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == self.rp.redirect_uri, self.location
        return query(self.location)

    @property
    def code(self) -> str:
        params = self.params
        assert "code" in params, params
        assert params.get("state") == self.state
        return params["code"]

    def describe(self) -> str:
        if self.final is None:
            return "?"
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", self.final.text))[:600]
        return f"{self.final.status_code} {self.final.headers.get('location', '')} {text}"


class _SharedTransport(AsyncBaseTransport):
    """The test client's transport, lent to other HTTP clients (which must not close it)."""

    def __init__(self, client: AsyncTestClient[Any]) -> None:
        self.inner = client._transport

    async def handle_async_request(self, request: Request) -> Response:
        return await self.inner.handle_async_request(request)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        pass


class Provider:
    """The relying party's view of the provider, plus the browsers its people use."""

    def __init__(self, client: AsyncTestClient[Any], runtime: Runtime) -> None:
        self.client = client
        self.runtime = runtime
        # Back-channel calls share the app's transport but no cookie with any browser.
        self.transport = _SharedTransport(client)
        self.http = AsyncClient(transport=self.transport, base_url=ISSUER)
        self._oauth: list[AsyncOAuth2Client] = []

    async def aclose(self) -> None:
        for session in self._oauth:
            await session.aclose()
        await self.http.aclose()

    def browser(self) -> Browser:
        return Browser(self.client, own_cookies=True)

    def oauth(self, rp: RP, *, scope: str = "openid", auth_method: str | None = None,
              redirect_uri: str | None = None, **kwargs: Any) -> AsyncOAuth2Client:
        session = AsyncOAuth2Client(
            client_id=rp.client_id, client_secret=rp.client_secret, scope=scope,
            redirect_uri=redirect_uri or rp.redirect_uri,
            token_endpoint_auth_method=auth_method or rp.auth_method,
            revocation_endpoint_auth_method=auth_method or rp.auth_method,
            code_challenge_method="S256", transport=self.transport, base_url=ISSUER, **kwargs)
        self._oauth.append(session)
        return session

    # -- front channel --

    def authorization_url(self, rp: RP, *, scope: str = "openid", state: str | None = "auto",
                          nonce: str | None = "auto", pkce: bool | None = None,
                          redirect_uri: str | None = None, **extra: str) -> tuple[str, str | None, str | None,
                                                                                  str | None]:
        """(url, state, nonce, code_verifier), built by Authlib."""
        if pkce is None:
            pkce = rp.public
        state = generate_token(20) if state == "auto" else state
        nonce = generate_token(20) if nonce == "auto" else nonce
        verifier = generate_token(48) if pkce else None
        session = self.oauth(rp, scope=scope, redirect_uri=redirect_uri)
        if nonce is not None:
            extra["nonce"] = nonce
        url, _ = session.create_authorization_url(AUTHORIZE, state=state, code_verifier=verifier, **extra)
        if state is None:  # Authlib always adds one: take it out again
            url = re.sub(r"&state=[^&]*", "", url)
        return url, state, nonce, verifier

    async def authorize(self, rp: RP, visitor: Browser | None = None, *, email: str = AGENT,
                        password: str = DEMO_PASSWORD, employer: int | None = None, method: str = "GET",
                        url: str | None = None, login: bool = True, **params: Any) -> Flow:
        """Send a browser to the authorization endpoint and answer the pages it meets (login form,
        employer choice) until the provider redirects to the client or stops on a page.

        ``login=False``: stop at the login form instead of filling it in."""
        visitor = visitor or self.browser()
        built, state, nonce, verifier = self.authorization_url(rp, **params)
        url = url or built
        flow = Flow(rp=rp, visitor=visitor, state=state, nonce=nonce, verifier=verifier, url=url)
        if method == "POST":
            form = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
            response = await visitor.post("/oidc/authorize", form, csrf=False)
        else:
            response = await visitor.get(local_path(url))
        await self.drive(flow, response, email=email, password=password, employer=employer, login=login)
        return flow

    async def drive(self, flow: Flow, response: Response, *, email: str = AGENT, password: str = DEMO_PASSWORD,
                    employer: int | None = None, login: bool = True) -> Flow:
        visitor = flow.visitor
        for _ in range(12):
            flow.final = response
            if response.status_code in (301, 302, 303, 307, 308):
                location = response.headers["location"]
                if not is_local(location):
                    flow.location = location
                    return flow
                flow.pages.append(local_path(location))
                response = await visitor.get(local_path(location))
                continue
            if response.status_code != 200:
                return flow
            page_forms = forms(response.text)
            login_form = next((f for f in page_forms if any(i.get("name") == "password" for i in f["inputs"])), None)
            choice_form = next((f for f in page_forms if any(i.get("name") == "employer_id" for i in f["inputs"])),
                               None)
            code_form = next((f for f in page_forms if f.get("action") == "/login/second-facteur"), None)
            if code_form is not None:  # the second factor of a staff account (tests.helpers.totp_code)
                data = {i["name"]: html.unescape(i.get("value", "")) for i in code_form["inputs"]
                        if i.get("name") and i.get("type") == "hidden" and i["name"] != "_csrf_token"}
                response = await visitor.post("/login/second-facteur",
                                              data | {"code": await totp_code(visitor.client, email)})
                continue
            if login_form is not None:
                if not login:
                    return flow
                flow.logins += 1
                data = {i["name"]: html.unescape(i.get("value", "")) for i in login_form["inputs"]
                        if i.get("name") and i.get("type") == "hidden" and i["name"] != "_csrf_token"}
                data |= {"email": email, "password": password}
                response = await visitor.post(login_form["action"] or "/login", data)
                continue
            if choice_form is not None:
                flow.choices += 1
                data = {i["name"]: html.unescape(i.get("value", "")) for i in choice_form["inputs"]
                        if i.get("name") and i.get("type") == "hidden" and i["name"] != "_csrf_token"}
                radios = [i for i in choice_form["inputs"] if i.get("name") == "employer_id"]
                if employer is not None:
                    assert str(employer) in [r.get("value") for r in radios], (employer, radios)
                    data["employer_id"] = str(employer)
                else:
                    checked = [r for r in radios if "checked" in r]
                    data["employer_id"] = (checked or radios)[0].get("value", "")
                for button in choice_form["inputs"]:  # a named submit button carries its value
                    if button.get("_tag") == "button" and button.get("name") and button["name"] not in data:
                        data[button["name"]] = button.get("value", "")
                response = await visitor.post(choice_form["action"] or flow.pages[-1], data)
                continue
            return flow
        raise AssertionError(f"too many redirects: {flow.pages}")

    # -- back channel --

    async def exchange(self, flow: Flow, **kwargs: Any) -> dict[str, Any]:
        """Authlib exchanges the code (checking the returned state) with the client's auth method."""
        session = self.oauth(flow.rp, **{k: kwargs.pop(k) for k in ("auth_method",) if k in kwargs})
        assert flow.location is not None, flow.describe()
        if flow.verifier:
            kwargs["code_verifier"] = flow.verifier
        token = await session.fetch_token(TOKEN, authorization_response=flow.location, state=flow.state, **kwargs)
        return dict(token)

    async def token_request(self, rp: RP | None, data: dict[str, str], *, auth: str = "basic") -> Response:
        """A raw token request: ``auth`` is basic, post or none."""
        form = dict(data)
        kwargs: dict[str, Any] = {}
        if rp is not None:
            if auth == "basic" and rp.client_secret is not None:
                kwargs["auth"] = (rp.client_id, rp.client_secret)
            elif auth == "post":
                form |= {"client_id": rp.client_id, "client_secret": rp.client_secret or ""}
            else:
                form["client_id"] = rp.client_id
        return await self.http.post(TOKEN, data=form, **kwargs)

    async def code_request(self, flow: Flow, *, code: str | None = None, **extra: str) -> Response:
        data = {"grant_type": "authorization_code", "code": code or flow.code, "redirect_uri": flow.rp.redirect_uri}
        if flow.verifier:
            data["code_verifier"] = flow.verifier
        data |= extra
        return await self.token_request(flow.rp, data, auth="none" if flow.rp.public else "basic")

    async def jwks(self) -> dict[str, Any]:
        response = await self.http.get(JWKS)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def discovery(self) -> dict[str, Any]:
        response = await self.http.get(DISCOVERY)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def id_token(self, rp: RP, token: dict[str, Any] | str, *, nonce: str | None = None,
                       max_age: int | None = None) -> CodeIDToken:
        """Verify the ID token's signature (Authlib JOSE, the client's algorithm only, the published
        keys) and validate its claims (``CodeIDToken``)."""
        raw = token if isinstance(token, str) else token["id_token"]
        access_token = None if isinstance(token, str) else token.get("access_token")
        keys = JsonWebKey.import_key_set(await self.jwks())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decoded = JsonWebToken([rp.alg]).decode(raw, keys)
        claims = CodeIDToken(dict(decoded), dict(decoded.header),
                             options={"iss": {"essential": True, "value": ISSUER},
                                      "aud": {"essential": True, "values": [rp.client_id]},
                                      "sub": {"essential": True}},
                             params={"nonce": nonce, "client_id": rp.client_id, "access_token": access_token,
                                     "max_age": max_age})
        claims.validate(leeway=5)
        return claims

    async def userinfo(self, access_token: str, *, how: str = "get") -> Response:
        if how == "get":
            return await self.http.get(USERINFO, headers={"Authorization": f"Bearer {access_token}"})
        if how == "post-header":
            return await self.http.post(USERINFO, headers={"Authorization": f"Bearer {access_token}"})
        return await self.http.post(USERINFO, data={"access_token": access_token})

    async def login_flow(self, rp: RP, visitor: Browser | None = None, **kwargs: Any) -> tuple[Flow, dict[str, Any],
                                                                                               CodeIDToken]:
        """The whole happy path: authorize (with login), exchange, validated ID token."""
        flow = await self.authorize(rp, visitor, **kwargs)
        assert flow.location is not None, flow.describe()
        token = await self.exchange(flow)
        claims = await self.id_token(rp, token, nonce=flow.nonce, max_age=kwargs.get("max_age"))
        return flow, token, claims


@pytest.fixture
async def op(app: Litestar, runtime: Runtime) -> AsyncIterator[Provider]:
    async with AsyncTestClient(app=app, base_url=ISSUER) as client:
        provider = Provider(client, runtime)
        try:
            yield provider
        finally:
            await provider.aclose()
