"""OpenID Connect endpoints: discovery, JWKS, authorize, token, userinfo, revocation, introspection, logout."""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from litestar import Request, Response, Router, get, post, route
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template
from sqlalchemy import select

from convergences.accounts.models import Account
from convergences.db import transaction
from convergences.oidc import keys
from convergences.oidc.services import (
    SUPPORTED_SCOPES,
    Client,
    OAuthError,
    ProviderService,
    eligibility,
    find_client,
    referents_of,
    subject,
)
from convergences.security.models import LoginSession
from convergences.security.tokens import Signer
from convergences.web import current, render, runtime

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
STRIP_ON_RELOGIN = {"prompt", "max_age"}


def _json(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(content=data, status_code=status, media_type="application/json",
                    headers={**NO_STORE, **(headers or {})})


def _oauth_error(exc: OAuthError) -> Response[Any]:
    body = {"error": exc.error}
    if exc.description:
        body["error_description"] = exc.description
    headers = {"WWW-Authenticate": f'Basic realm="convergences", error="{exc.error}"'} if exc.status == 401 else {}
    return _json(body, exc.status, headers)


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _error_page(request: Request[Any, Any, Any], message: str, status: int = 400) -> Template:
    return render(request, "oidc/error.html", status_code=status, message=message,
                  actor=request.state.current[0] if request.state.get("current") else None)


async def _params(request: Request[Any, Any, Any]) -> dict[str, str]:
    params = {k: v for k, v in request.query_params.items()}
    if request.method == "POST":
        form = await request.form()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


# -- discovery --------------------------------------------------------------------------------

@get("/.well-known/openid-configuration", name="oidc_discovery")
async def discovery(request: Request[Any, Any, Any]) -> Response[Any]:
    base = runtime(request).settings.base_url
    return Response(content={
        "issuer": base,
        "authorization_endpoint": f"{base}/oidc/authorize",
        "token_endpoint": f"{base}/oidc/token",
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "jwks_uri": f"{base}/oidc/jwks",
        "end_session_endpoint": f"{base}/oidc/logout",
        "revocation_endpoint": f"{base}/oidc/revoke",
        "introspection_endpoint": f"{base}/oidc/introspect",
        "scopes_supported": list(SUPPORTED_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": list(keys.ALGORITHMS),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "amr", "sid", "nonce", "name",
                             "given_name", "family_name", "email", "email_verified", "employer", "roles"],
        "claims_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "prompt_values_supported": ["none", "login", "select_account"],
        "ui_locales_supported": ["fr"],
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "authorization_response_iss_parameter_supported": True,
    }, headers={"Cache-Control": "public, max-age=300"})


@get("/oidc/jwks", name="oidc_jwks")
async def jwks(request: Request[Any, Any, Any]) -> Response[Any]:
    async with transaction(runtime(request).maker) as db:
        data = await keys.jwks(db)
    return Response(content=data, media_type="application/jwk-set+json",
                    headers={"Cache-Control": "public, max-age=300"})


# -- authorization ----------------------------------------------------------------------------

@route("/oidc/authorize", http_method=["GET", "POST"], name="oidc_authorize")
async def authorize(request: Request[Any, Any, Any]) -> Response[Any]:
    rt = runtime(request)
    params = await _params(request)
    async with transaction(rt.maker) as db:
        client = await find_client(db, params.get("client_id"))
    if client is None:
        return _error_page(request, "L'application qui vous a envoyé ici n'est pas enregistrée auprès de "
                                    "Convergences (identifiant de client inconnu).")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uris:
        # Never redirect to an address the client did not register (no open redirector).
        return _error_page(request, "L'adresse de retour demandée par l'application n'est pas celle qui a été "
                                    "enregistrée : par sécurité, la connexion est interrompue.")
    state = params.get("state")

    def fail(error: str, description: str = "") -> Response[Any]:
        return Redirect(_with_query(redirect_uri, {"error": error, "error_description": description or None,
                                                   "state": state, "iss": rt.settings.base_url}),
                        status_code=303)

    if "request" in params:
        return fail("request_not_supported", "Les objets de requête ne sont pas pris en charge.")
    if "request_uri" in params:
        return fail("request_uri_not_supported", "request_uri n'est pas pris en charge.")
    response_type = params.get("response_type")
    if not response_type:
        return fail("invalid_request", "response_type manquant.")
    if response_type != "code":
        return fail("unsupported_response_type", "Seul le flux « code » est pris en charge.")
    scopes = [s for s in params.get("scope", "").split() if s in SUPPORTED_SCOPES]
    if "openid" not in scopes:
        return fail("invalid_scope", "La portée « openid » est obligatoire.")
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method", "plain" if challenge else None)
    if challenge and method != "S256":
        return fail("invalid_request", "Seule la méthode PKCE S256 est acceptée.")
    if challenge and not (43 <= len(challenge) <= 128):
        return fail("invalid_request", "code_challenge invalide.")
    if client.is_public and not challenge:
        return fail("invalid_request", "PKCE (S256) est obligatoire pour ce client.")
    if len(params.get("nonce", "")) > 500 or len(state or "") > 2000:
        return fail("invalid_request", "nonce ou state trop long.")
    prompts = set(params.get("prompt", "").split())
    max_age = params.get("max_age")
    claims_request = _claims_param(params.get("claims"))

    found = await current(request)
    session: LoginSession | None = None
    if found is not None:
        async with transaction(rt.maker) as db:
            session = await db.get(LoginSession, found[0].session_id)
    needs_login = session is None or "login" in prompts
    if session is not None and max_age is not None:
        try:
            if time.time() - session.authenticated_at.timestamp() > max(int(max_age), 0):
                needs_login = True
        except ValueError:
            return fail("invalid_request", "max_age invalide.")
    hint = params.get("id_token_hint")
    if hint and session is not None:
        async with transaction(rt.maker) as db:
            hinted = await keys.verify(db, hint)
            expected = await subject(db, rt, client, session.account_id)
        if hinted is None or hinted.get("sub") != expected:
            needs_login = True
    if needs_login:
        if "none" in prompts:
            return fail("login_required", "Une connexion est nécessaire.")
        next_params = {k: v for k, v in params.items() if k not in STRIP_ON_RELOGIN}
        target = "/oidc/authorize?" + urlencode(next_params)
        login = {"next": target}
        if session is not None:
            login["reauth"] = "1"
        if params.get("login_hint"):
            login["login_hint"] = params["login_hint"][:254]
        return Redirect("/login?" + urlencode(login), status_code=303)
    assert session is not None

    async with transaction(rt.maker) as db:
        elig = await eligibility(db, client, session.account_id)
        account = await db.get(Account, session.account_id)
        assert account is not None
        if not elig.employers:
            referents = await referents_of(db, session.account_id)
            back = _with_query(redirect_uri, {"error": "access_denied", "state": state,
                                              "iss": rt.settings.base_url})
            return render(request, "oidc/no_right.html", status_code=403, actor=found[0] if found else None,
                          application=elig.application, referents=referents, back=back)
        eligible = {e.id: e for e, _ in elig.employers}
        employer_id = None
        if len(eligible) == 1:
            employer_id = next(iter(eligible))
        elif account.default_employer_id in eligible and "select_account" not in prompts:
            employer_id = account.default_employer_id
        if employer_id is None:
            if "none" in prompts:
                return fail("interaction_required", "Choix de l'employeur nécessaire.")
            # prompt=select_account shows the choice again; it is not carried back after the choice.
            return render(request, "oidc/choose_employer.html", actor=found[0] if found else None,
                          application=elig.application, employers=[e for e, _ in elig.employers],
                          params={k: v for k, v in params.items() if k != "prompt"},
                          current=account.default_employer_id)
        code = await ProviderService(rt).issue_code(
            db, client, session.account_id, employer_id, redirect_uri, " ".join(dict.fromkeys(scopes)),
            params.get("nonce"), challenge, session.authenticated_at, session.id, claims_request)
    return Redirect(_with_query(redirect_uri, {"code": code, "state": state, "iss": rt.settings.base_url}),
                    status_code=303)


def _claims_param(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@post("/oidc/employeur", name="oidc_choose_employer")
async def choose_employer(request: Request[Any, Any, Any]) -> Response[Any]:
    """The agent picks the employer they act for; it becomes their default, then authorize resumes."""
    rt = runtime(request)
    found = await current(request)
    form = await request.form()
    params = {k[2:]: v for k, v in form.items() if k.startswith("p_") and isinstance(v, str)}
    if found is None:
        return Redirect("/login", status_code=303)
    try:
        employer_id = int(str(form.get("employer_id", "")))
    except ValueError:
        employer_id = 0
    async with transaction(rt.maker) as db:
        client = await find_client(db, params.get("client_id"))
        if client is None:
            return _error_page(request, "Application inconnue.")
        elig = await eligibility(db, client, found[0].account_id)
        if employer_id not in {e.id for e, _ in elig.employers}:
            return render(request, "oidc/choose_employer.html", status_code=422, actor=found[0],
                          application=elig.application, employers=[e for e, _ in elig.employers],
                          params=params, error="Choisissez l'employeur pour lequel vous agissez.")
        account = await db.get(Account, found[0].account_id)
        assert account is not None
        account.default_employer_id = employer_id
    return Redirect("/oidc/authorize?" + urlencode(params), status_code=303)


# -- token, userinfo, revocation, introspection ------------------------------------------------

def _basic_credentials(request: Request[Any, Any, Any]) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
        client_id, _, secret = decoded.partition(":")
    except (ValueError, UnicodeDecodeError):
        raise OAuthError("invalid_client", "En-tête Authorization illisible.", 401) from None
    return unquote(client_id), unquote(secret)


async def _client(request: Request[Any, Any, Any], form: dict[str, str]) -> Client:
    basic = _basic_credentials(request)
    if basic and ("client_secret" in form):
        raise OAuthError("invalid_request", "Une seule méthode d'authentification du client est permise.")
    client_id, secret = basic if basic else (form.get("client_id"), form.get("client_secret"))
    if basic and form.get("client_id") and form["client_id"] != client_id:
        raise OAuthError("invalid_client", "client_id incohérent.", 401)
    rt = runtime(request)
    async with transaction(rt.maker) as db:
        return await ProviderService(rt).authenticate_client(db, client_id, secret)


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


@post("/oidc/token", name="oidc_token")
async def token(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await _form(request)
    service = ProviderService(runtime(request))
    try:
        client = await _client(request, form)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            if not form.get("code"):
                raise OAuthError("invalid_request", "code manquant.")
            return _json(await service.exchange_code(client, form["code"], form.get("redirect_uri"),
                                                     form.get("code_verifier")))
        if grant == "refresh_token":
            if not client.allow_refresh:
                raise OAuthError("unauthorized_client", "Ce client n'a pas droit aux jetons de rafraîchissement.")
            if not form.get("refresh_token"):
                raise OAuthError("invalid_request", "refresh_token manquant.")
            return _json(await service.refresh(client, form["refresh_token"], form.get("scope")))
        raise OAuthError("unsupported_grant_type", "Seuls authorization_code et refresh_token sont acceptés.")
    except OAuthError as exc:
        return _oauth_error(exc)


@route("/oidc/userinfo", http_method=["GET", "POST"], name="oidc_userinfo")
async def userinfo(request: Request[Any, Any, Any]) -> Response[Any]:
    header = request.headers.get("authorization", "")
    access = header[7:].strip() if header.lower().startswith("bearer ") else None
    if access is None and request.method == "POST":
        access = (await _form(request)).get("access_token")
    if not access:
        return _json({"error": "invalid_token"}, 401, {"WWW-Authenticate": 'Bearer realm="convergences"'})
    try:
        return _json(await ProviderService(runtime(request)).userinfo(access))
    except OAuthError as exc:
        return _json({"error": exc.error, "error_description": exc.description}, 401,
                     {"WWW-Authenticate": f'Bearer realm="convergences", error="{exc.error}"'})


@post("/oidc/revoke", name="oidc_revoke")
async def revoke(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await _form(request)
    try:
        client = await _client(request, form)
        if not form.get("token"):
            raise OAuthError("invalid_request", "token manquant.")
        await ProviderService(runtime(request)).revoke(client, form["token"])
    except OAuthError as exc:
        return _oauth_error(exc)
    return Response(content=b"", status_code=200, headers=NO_STORE)


@post("/oidc/introspect", name="oidc_introspect")
async def introspect(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await _form(request)
    try:
        client = await _client(request, form)
        if client.is_public:
            raise OAuthError("invalid_client", "L'introspection est réservée aux clients confidentiels.", 401)
        if not form.get("token"):
            raise OAuthError("invalid_request", "token manquant.")
        return _json(await ProviderService(runtime(request)).introspect(client, form["token"]))
    except OAuthError as exc:
        return _oauth_error(exc)


# -- RP-initiated logout ----------------------------------------------------------------------

@route("/oidc/logout", http_method=["GET", "POST"], name="oidc_logout")
async def end_session(request: Request[Any, Any, Any]) -> Response[Any]:
    rt = runtime(request)
    params = await _params(request)
    hint, target, state = params.get("id_token_hint"), params.get("post_logout_redirect_uri"), params.get("state")
    hinted = None
    async with transaction(rt.maker) as db:
        if hint:
            hinted = await keys.verify(db, hint)
            if hinted is None:
                return _error_page(request, "Le jeton fourni par l'application n'est pas valide.")
        audience = (hinted or {}).get("aud")
        client_id = params.get("client_id") or audience
        if hinted is not None and params.get("client_id") and params["client_id"] != audience:
            # RP-Initiated Logout 1.0 §2: client_id must be the client the ID token was issued to.
            return _error_page(request, "L'application indiquée n'est pas celle à qui le jeton a été délivré.")
        client = await find_client(db, client_id if isinstance(client_id, str) else None)
    if target and (client is None or target not in client.post_logout_redirect_uris):
        return _error_page(request, "L'adresse de retour après déconnexion n'est pas enregistrée pour cette "
                                    "application.")
    destination = _with_query(target, {"state": state}) if target else None
    found = await current(request)
    if found is None:
        return Redirect(destination, status_code=303) if destination else render(
            request, "oidc/logged_out.html", actor=None)
    same_person = False
    if hinted is not None and client is not None:
        async with transaction(rt.maker) as db:
            same_person = hinted.get("sub") == await subject(db, rt, client, found[0].account_id)
    if not same_person:
        # Without a matching id_token_hint, ask: a third party must not be able to log people out.
        return render(request, "oidc/logout_confirm.html", actor=found[0],
                      destination=_destination_signer(rt).dumps(destination or ""),
                      application=client.name if client else None)
    return await _logout_response(request, destination)


@post("/oidc/logout/confirmer", name="oidc_logout_confirm")
async def end_session_confirmed(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await _form(request)
    rt = runtime(request)
    # The form carries the destination this provider validated for the asking client, signed: a forged
    # form cannot send the person to another client's post-logout address. Registered again, for
    # a client whose address was removed meanwhile.
    signed = _destination_signer(rt).loads(form.get("destination") or "", max_age=CONFIRM_MAX_AGE)
    destination = signed if isinstance(signed, str) and signed else None
    if destination:
        async with transaction(rt.maker) as db:
            clients = (await db.scalars(select(Client))).all()
        allowed = {_strip_state(uri) for c in clients for uri in c.post_logout_redirect_uris}
        if _strip_state(destination) not in allowed:
            destination = None
    return await _logout_response(request, destination)


CONFIRM_MAX_AGE = 30 * 60


def _destination_signer(rt: Any) -> Signer:
    return Signer(rt.settings.secret_key, "convergences.logout-destination")


def _strip_state(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "state"]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


async def _logout_response(request: Request[Any, Any, Any], destination: str | None) -> Response[Any]:
    from convergences.accounts.services import AuthService

    rt = runtime(request)
    found = await current(request)
    if found is not None:
        await AuthService(rt).logout(found[0])  # queues and kicks the back-channel logouts
    response: Response[Any] = (Redirect(destination, status_code=303) if destination
                               else render(request, "oidc/logged_out.html", actor=None))
    response.cookies.append(Cookie(key=rt.settings.session_cookie, value="", path="/", max_age=0, httponly=True,
                                   samesite="lax", secure=rt.settings.secure_cookies))
    return response


router = Router(path="/", route_handlers=[discovery, jwks, authorize, choose_employer, token, userinfo, revoke,
                                          introspect, end_session, end_session_confirmed])

# Endpoints called by applications' servers or by cross-site form posts, which carry no portal CSRF token.
# Litestar matches them with an unanchored findall on the path: each is anchored to one exact path.
CSRF_EXEMPT = [f"^/oidc/{name}/?$" for name in ("authorize", "token", "userinfo", "revoke", "introspect", "logout")]
