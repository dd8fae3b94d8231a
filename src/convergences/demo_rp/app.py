"""A demo relying party of the Convergences OpenID Connect provider, as an integrator would write one.

Everything OpenID Connect goes through standard libraries: Authlib's ``AsyncOAuth2Client`` runs the
authorization code flow (PKCE S256, ``client_secret_basic``) and joserfc checks the signed tokens
against the portal's JWKS. What the application itself decides is small and visible here:

- ``/login`` remembers ``state``, ``nonce`` and the PKCE verifier in a server-side session, then
  sends the browser to the portal's authorization endpoint;
- ``/callback`` checks ``state``, exchanges the code, validates the ID token (signature, ``iss``,
  ``aud``/``azp``, ``exp``, ``iat``, ``nonce``, ``at_hash``), reads ``userinfo`` (same ``sub``) and
  opens a new session (new cookie value) holding the claims and the portal's ``sid``;
- ``/logout`` ends the local session and sends the browser to the portal's ``end_session_endpoint``
  (RP-initiated logout: ``id_token_hint``, ``post_logout_redirect_uri``, ``state``);
- ``/backchannel-logout`` receives the portal's ``logout_token`` (OpenID Connect Back-Channel
  Logout 1.0), validates it (signature, ``iss``, ``aud``, ``iat``/``exp``, ``events``, no ``nonce``,
  ``jti`` never seen before) and ends every session of that ``sid`` (or of that ``sub``).

Sessions live in memory (a demo: a real application keeps them in its own store).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import httpx
from authlib.integrations.base_client.errors import OAuthError

with warnings.catch_warnings():
    # Authlib >= 1.9 prefers the httpx2 package and warns (filter "always") when it falls back to httpx,
    # which this project uses everywhere: keep that notice out of `convergences demo-apps`' output.
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from litestar.types import Message, Scope

from convergences.demo_rp import tokens
from convergences.demo_rp.sessions import PENDING_LOGIN_SECONDS, PendingLogin, Session, SessionStore, end_session
from convergences.demo_rp.tokens import (
    BACKCHANNEL_EVENT,
    LEEWAY_SECONDS,
    LOGOUT_TOKEN_MAX_AGE_SECONDS,
    JwksCache,
    LoginError,
    token_hash,
)

# Re-exported: these names lived here before the token checks and the session store had their modules.
__all__ = ["BACKCHANNEL_EVENT", "DEMO_APPS", "DemoApp", "LoginError", "PendingLogin", "RelyingParty", "Session",
           "create_demo_rp", "token_hash"]

log = logging.getLogger("convergences.demo_rp")

HERE = Path(__file__).parent
PARIS = ZoneInfo("Europe/Paris")
TIME_CLAIMS = ("exp", "iat", "auth_time", "nbf", "updated_at")


@dataclass(frozen=True)
class DemoApp:
    """One of the two demo applications served by ``convergences demo-apps`` (fixed demo credentials)."""

    env_key: str
    name: str
    client_id: str
    client_secret: str
    port: int


DEMO_APPS = (
    DemoApp("BIP", "BIP (démo)", "demo-bip", "demo-bip-secret", 8001),
    DemoApp("NET_COTISATIONS", "Net Cotisations (démo)", "demo-net-cotisations", "demo-net-cotisations-secret", 8002),
)


class RelyingParty:
    """The OpenID Connect side of a demo application: discovery, keys, login, tokens, logout."""

    def __init__(self, *, name: str, client_id: str, client_secret: str, portal_url: str, public_url: str,
                 scope: str = "openid profile email", transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.name = name
        self.client_id = client_id
        self.client_secret = client_secret
        self.issuer = portal_url.rstrip("/")
        self.public_url = public_url.rstrip("/")
        self.redirect_uri = self.public_url + "/callback"
        self.post_logout_redirect_uri = self.public_url + "/"
        self.scope = scope
        self.transport = transport
        self.cookie_name = "demo_rp_" + re.sub(r"[^A-Za-z0-9]", "_", client_id)
        self.store = SessionStore()
        self.jwks = JwksCache(self._http, self._jwks_uri)
        self._metadata: dict[str, Any] | None = None

    @property
    def sessions(self) -> dict[str, Session]:
        return self.store.sessions

    @property
    def seen_jti(self) -> dict[str, float]:
        return self.store.seen_jti

    @property
    def _keys_fetched_at(self) -> float:  # kept for the tests that move the JWKS refresh floor
        return self.jwks.fetched_at

    @_keys_fetched_at.setter
    def _keys_fetched_at(self, value: float) -> None:
        self.jwks.fetched_at = value

    # -- provider metadata and keys ------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport, timeout=10.0)

    async def metadata(self) -> dict[str, Any]:
        """The discovery document, fetched on first use (the portal may start after this app)."""
        if self._metadata is None:
            url = self.issuer + "/.well-known/openid-configuration"
            try:
                async with self._http() as http:
                    response = await http.get(url)
                response.raise_for_status()
                data = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise LoginError("Le portail Convergences est injoignable pour le moment. Réessayez dans un instant.",
                                 f"discovery {url}: {exc!r}", status=503) from exc
            if data.get("issuer") != self.issuer:
                raise LoginError("Le portail Convergences est mal configuré (émetteur inattendu).",
                                 f"discovery issuer {data.get('issuer')!r} != {self.issuer!r}", status=502)
            missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not data.get(k)]
            if missing:
                raise LoginError("Le portail Convergences est mal configuré.", f"discovery lacks {missing}", status=502)
            self._metadata = data
        return self._metadata

    async def _jwks_uri(self) -> str:
        return str((await self.metadata())["jwks_uri"])

    def algorithms(self, metadata: Mapping[str, Any], field_name: str = "id_token_signing_alg_values_supported"
                   ) -> list[str]:
        return tokens.algorithms(metadata, field_name)

    async def keys(self, refresh: bool = False) -> KeySet:
        return await self.jwks.keys(refresh)

    async def verify_signature(self, value: str, algorithms: list[str]) -> jwt.Token:
        """Check the JWS signature against the JWKS; an unknown ``kid`` refetches the JWKS once (rotation)."""
        return await self.jwks.verify_signature(value, algorithms)

    # -- sessions -------------------------------------------------------------------------------------------

    def session_for(self, request: Request[Any, Any, Any]) -> Session | None:
        return self.store.get(request.cookies.get(self.cookie_name))

    def new_session(self) -> Session:
        return self.store.new()

    # -- login ------------------------------------------------------------------------------------------------

    def _oauth_client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(client_id=self.client_id, client_secret=self.client_secret, scope=self.scope,
                                 redirect_uri=self.redirect_uri, code_challenge_method="S256",
                                 token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
                                 transport=self.transport, timeout=10.0)

    async def authorization_url(self, session: Session) -> str:
        metadata = await self.metadata()
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        now = time.time()
        session.pending = {s: p for s, p in session.pending.items() if now - p.created < PENDING_LOGIN_SECONDS}
        session.pending[state] = PendingLogin(nonce=nonce, code_verifier=verifier)
        async with self._oauth_client() as client:
            url, _ = client.create_authorization_url(metadata["authorization_endpoint"], state=state,
                                                     code_verifier=verifier, nonce=nonce)
        return str(url)

    async def complete_login(self, session: Session, params: Mapping[str, str]) -> Session:
        """The redirect back from the portal: check it, exchange the code, validate, open a new session."""
        state = params.get("state", "")
        pending = session.pending.pop(state, None) if state else None
        if pending is None or time.time() - pending.created > PENDING_LOGIN_SECONDS:
            raise LoginError("Cette demande de connexion a expiré ou n'a pas été faite depuis cette application. "
                             "Recommencez la connexion.", "unknown or expired state")
        metadata = await self.metadata()
        if params.get("iss") and params["iss"] != self.issuer:  # RFC 9207 mix-up defence
            raise LoginError("La réponse ne vient pas du portail attendu.", f"iss parameter {params['iss']!r}")
        if params.get("error"):
            reason = params.get("error_description") or params["error"]
            raise LoginError(f"Le portail Convergences n'a pas autorisé la connexion : {reason}",
                             f"authorization error {params['error']!r}: {reason}", status=403)
        if not params.get("code"):
            raise LoginError("La réponse du portail est incomplète.", "no code")
        async with self._oauth_client() as client:
            try:
                token = await client.fetch_token(metadata["token_endpoint"], grant_type="authorization_code",
                                                 code=params["code"], code_verifier=pending.code_verifier)
            except (OAuthError, httpx.HTTPError, ValueError) as exc:
                raise LoginError("L'échange du code d'autorisation avec le portail a échoué.", f"token: {exc!r}",
                                 status=502) from exc
            if not token.get("id_token"):
                raise LoginError("Le portail n'a pas renvoyé de jeton d'identité.", "no id_token", status=502)
            claims = await self.validate_id_token(token["id_token"], pending.nonce, token.get("access_token"))
            userinfo: dict[str, Any] = {}
            if metadata.get("userinfo_endpoint") and token.get("access_token"):
                userinfo = await self.fetch_userinfo(client, metadata, claims["sub"])
        # A new session (new cookie value) once signed in: a cookie planted before login is worthless.
        self.sessions.pop(session.key, None)
        fresh = self.new_session()
        fresh.id_token, fresh.id_token_claims, fresh.userinfo = token["id_token"], claims, userinfo
        fresh.sub, fresh.sid = claims["sub"], claims.get("sid")
        log.info("%s: signed in sub=%s sid=%s", self.name, fresh.sub, fresh.sid)
        return fresh


    async def validate_id_token(self, value: str, nonce: str, access_token: str | None) -> dict[str, Any]:
        """OIDC Core 3.1.3.7: signature, iss, aud (and azp), exp, iat, nonce; at_hash when present."""
        metadata = await self.metadata()
        return await tokens.validate_id_token(self.jwks, value, issuer=self.issuer, client_id=self.client_id,
                                              algorithms=self.algorithms(metadata), nonce=nonce,
                                              access_token=access_token)

    async def fetch_userinfo(self, client: AsyncOAuth2Client, metadata: Mapping[str, Any], sub: str
                             ) -> dict[str, Any]:
        try:
            response = await client.get(metadata["userinfo_endpoint"])
            response.raise_for_status()
            if response.headers.get("content-type", "").startswith("application/jwt"):
                token = await self.verify_signature(
                    response.text.strip(), self.algorithms(metadata, "userinfo_signing_alg_values_supported"))
                jwt.JWTClaimsRegistry(iss={"essential": False, "value": self.issuer},
                                      aud={"essential": False, "value": self.client_id}).validate(token.claims)
                data = dict(token.claims)
            else:
                data = response.json()
        except (OAuthError, httpx.HTTPError, ValueError, JoseError) as exc:
            raise LoginError("Le portail n'a pas fourni les informations du compte.", f"userinfo: {exc!r}",
                             status=502) from exc
        if not isinstance(data, dict) or data.get("sub") != sub:  # OIDC Core 5.3.4
            raise LoginError("Le portail a fourni des informations d'un autre compte.", "userinfo sub mismatch",
                             status=502)
        return data

    # -- logout -------------------------------------------------------------------------------------------------

    async def end_session_url(self, session: Session) -> str | None:
        """RP-initiated logout at the portal (the local session is already ended)."""
        try:
            endpoint = (await self.metadata()).get("end_session_endpoint")
        except LoginError:
            return None
        if not endpoint or not session.id_token:
            return None
        params = {"id_token_hint": session.id_token, "post_logout_redirect_uri": self.post_logout_redirect_uri,
                  "client_id": self.client_id, "state": session.logout_state or ""}
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)

    async def backchannel_logout(self, logout_token: str) -> int:
        """OpenID Connect Back-Channel Logout 1.0, 2.6: validate, then end the sessions; returns how many."""
        metadata = await self.metadata()
        now = time.time()
        claims = await tokens.validate_logout_token(self.jwks, logout_token, issuer=self.issuer,
                                                    client_id=self.client_id, algorithms=self.algorithms(metadata),
                                                    now=now)
        self.store.purge()
        jti = f"{claims['iss']}|{claims['jti']}"
        if jti in self.seen_jti:
            raise LoginError("logout_token invalide", "jti replayed")
        expires = float(claims.get("exp") or claims["iat"] + LOGOUT_TOKEN_MAX_AGE_SECONDS) + LEEWAY_SECONDS
        self.seen_jti[jti] = max(expires, now + LEEWAY_SECONDS)
        ended = self.store.end_matching(claims.get("sub"), claims.get("sid"), "backchannel")
        log.info("%s: back-channel logout sub=%s sid=%s: %d session(s) ended", self.name, claims.get("sub"),
                 claims.get("sid"), ended)
        return ended

    @staticmethod
    def end(session: Session, reason: str) -> None:
        """Forget what the portal said about the person; keep a tombstone to tell them why."""
        end_session(session, reason)


# -- presentation ---------------------------------------------------------------------------------------------


def _display(name: str, value: Any) -> str:
    if name in TIME_CLAIMS and isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, UTC).astimezone(PARIS).strftime("%d/%m/%Y %H:%M:%S")
        return f"{value} ({moment})"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def claim_rows(claims: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(name, _display(name, claims[name])) for name in sorted(claims)]


def security_headers(portal_url: str) -> Any:
    portal = "{0.scheme}://{0.netloc}".format(urlsplit(portal_url))
    # form-action names the portal: the logout form's redirect goes there (browsers check redirects too).
    csp = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
           f"form-action 'self' {portal}; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")

    async def hook(message: Message, scope: Scope) -> None:
        if scope["type"] != "http" or message["type"] != "http.response.start":
            return
        headers = MutableScopeHeaders.from_message(message)
        headers.setdefault("Content-Security-Policy", csp)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        # The callback URL carries the authorization code: never leak it in a Referer.
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        if not scope["path"].startswith("/static/"):
            headers["Cache-Control"] = "no-store"

    return hook


def create_demo_rp(name: str, client_id: str, client_secret: str, portal_url: str, public_url: str, *,
                   transport: httpx.AsyncBaseTransport | None = None) -> Litestar:
    """A demo application signing its users in with Convergences (``public_url`` is where it is served).

    ``transport`` lets tests route the server-to-server calls (discovery, JWKS, token, userinfo).
    """
    rp = RelyingParty(name=name, client_id=client_id, client_secret=client_secret, portal_url=portal_url,
                      public_url=public_url, transport=transport)
    secure = urlsplit(rp.public_url).scheme == "https"

    def page(template: str, status: int = 200, **context: Any) -> Template:
        return Template(template_name=template, status_code=status,
                        context={"app_name": rp.name, "portal_url": rp.issuer, **context})

    def with_cookie(response: Response[Any], session: Session) -> Response[Any]:
        response.cookies.append(Cookie(key=rp.cookie_name, value=session.key, path="/", httponly=True,
                                       samesite="lax", secure=secure))
        return response

    def failure(exc: LoginError) -> Template:
        log.warning("%s: %s", rp.name, exc.detail or exc.message)
        return page("error.html", exc.status, message=exc.message)

    @get("/", name="home")
    async def home(request: Request[Any, Any, Any]) -> Template:
        session = rp.session_for(request)
        returned = request.query_params.get("state")
        logged_out_here = bool(session and returned and session.logout_state
                               and hmac.compare_digest(returned, session.logout_state))
        claims = session.claims if session and session.logged_in else {}
        return page("home.html", session=session if session and session.logged_in else None,
                    ended_by_portal=bool(session and session.ended == "backchannel"),
                    logged_out_here=logged_out_here, claims=claims,
                    employer=claims.get("employer") if isinstance(claims.get("employer"), dict) else None,
                    roles=claims.get("roles") or [],
                    id_token_rows=claim_rows(session.id_token_claims) if session else [],
                    userinfo_rows=claim_rows(session.userinfo) if session else [],
                    csrf=session.csrf if session else "")

    @get("/login", name="login")
    async def login(request: Request[Any, Any, Any]) -> Response[Any]:
        session = rp.session_for(request)
        if session is None or session.ended:
            if session is not None:
                rp.sessions.pop(session.key, None)
            session = rp.new_session()
        try:
            url = await rp.authorization_url(session)
        except LoginError as exc:
            return with_cookie(failure(exc), session)
        return with_cookie(Redirect(url, status_code=302), session)

    @get("/callback", name="callback")
    async def callback(request: Request[Any, Any, Any]) -> Response[Any]:
        session = rp.session_for(request)
        if session is None:
            return failure(LoginError("Cette demande de connexion a expiré ou n'a pas été faite depuis cette "
                                      "application. Recommencez la connexion.", "callback without a session"))
        try:
            fresh = await rp.complete_login(session, dict(request.query_params))
        except LoginError as exc:
            return failure(exc)
        return with_cookie(Redirect("/", status_code=303), fresh)

    @post("/logout", name="logout")
    async def logout(request: Request[Any, Any, Any],
                     data: dict[str, Any] = Body(media_type=RequestEncodingType.URL_ENCODED)) -> Response[Any]:
        session = rp.session_for(request)
        if session is None or not session.logged_in:
            return Redirect("/", status_code=303)
        if not hmac.compare_digest(str(data.get("csrf", "")), session.csrf):
            return page("error.html", 403, message="Le formulaire a expiré : rechargez la page puis recommencez.")
        session.logout_state = secrets.token_urlsafe(16)
        id_token = session.id_token
        rp.end(session, "rp")
        session.id_token = id_token  # only for the hint below
        target = await rp.end_session_url(session)
        session.id_token = None
        return Redirect(target or "/", status_code=303)

    @post("/backchannel-logout", name="backchannel_logout")
    async def backchannel_logout(data: dict[str, Any] = Body(media_type=RequestEncodingType.URL_ENCODED)
                                 ) -> Response[Any]:
        logout_token = data.get("logout_token")
        if not isinstance(logout_token, str) or not logout_token:
            return Response({"error": "invalid_request", "error_description": "logout_token manquant"},
                            status_code=400)
        try:
            await rp.backchannel_logout(logout_token)
        except LoginError as exc:
            log.warning("%s: back-channel logout refused: %s", rp.name, exc.detail)
            return Response({"error": "invalid_request", "error_description": exc.detail}, status_code=400)
        return Response(b"", status_code=200, media_type="text/plain")

    app = Litestar(
        route_handlers=[home, login, callback, logout, backchannel_logout,
                        create_static_files_router(path="/static", directories=[HERE / "static"], name="static",
                                                   include_in_schema=False)],
        template_config=TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine),
        before_send=[security_headers(rp.issuer)],
        openapi_config=None,
        debug=False,
    )
    app.state.rp = rp
    return app
