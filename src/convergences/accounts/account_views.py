"""« Mon compte »: the hub, password change and meter, email change, sessions; the forgotten-password
pages; and the administrators' help buttons on an agent's page (reset link, end sessions)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.di import Provide
from litestar.response import Redirect, Template

from convergences.accounts.credentials import RESET_INVALID, CredentialService, StepUpRequired
from convergences.accounts.models import Account
from convergences.accounts.views import Form, auth_rate_limit
from convergences.authz import Actor
from convergences.errors import ServiceError
from convergences.security.stepup import reauth_url
from convergences.security.strength import evaluate
from convergences.web import client_ip, provide_account, provide_actor, redirect, render, runtime, text

PASSWORD_LIMIT = 4096  # far above the policy's maximum: the policy, not a cut, refuses what is too long
FORGOT_DONE = ("Si un compte actif correspond à cette adresse, un courriel contenant un lien de "
               "réinitialisation vient de lui être envoyé (valable 15 minutes). Pensez à vérifier vos indésirables.")
ACCOUNT_DEPS = {"actor": Provide(provide_actor), "account": Provide(provide_account)}


def _svc(request: Request[Any, Any, Any]) -> CredentialService:
    return CredentialService(runtime(request))


def _secret(data: dict[str, Any], name: str) -> str:
    return str(data.get(name, ""))[:PASSWORD_LIMIT]


def _step_up(path: str) -> Response[Any]:
    return Redirect(reauth_url(path), status_code=303)


async def _stale(request: Request[Any, Any, Any], actor: Actor, path: str) -> Response[Any] | None:
    """The redirect to the re-authentication page when the actor's login is too old for ``path``."""
    try:
        await _svc(request).ensure_recent(actor)
    except StepUpRequired:
        return _step_up(path)
    return None


# -- the hub -------------------------------------------------------------------------------------

@get("/compte", name="account", dependencies=ACCOUNT_DEPS)
async def account_page(request: Request[Any, Any, Any], actor: Actor, account: Account) -> Template:
    return render(request, "accounts/account.html", actor=actor, account=account, nav="account")


# -- password ------------------------------------------------------------------------------------

@get("/compte/mot-de-passe", name="password_change", dependencies=ACCOUNT_DEPS)
async def password_page(request: Request[Any, Any, Any], actor: Actor, account: Account) -> Response[Any]:
    if (stale := await _stale(request, actor, "/compte/mot-de-passe")) is not None:
        return stale
    return render(request, "accounts/password_change.html", actor=actor, account=account, errors={},
                  verdict=None, end_others=True, nav="account")


@post("/compte/mot-de-passe", name="password_change_post", dependencies=ACCOUNT_DEPS)
async def password_post(request: Request[Any, Any, Any], actor: Actor, account: Account,
                        data: dict[str, Any] = Form) -> Response[Any]:
    svc = _svc(request)
    password = _secret(data, "password")
    end_others = text(data, "end_others", 5) in {"1", "on", "true"}
    try:
        errors = await svc.change_password(actor, _secret(data, "current"), password, _secret(data, "confirmation"),
                                           end_others)
    except StepUpRequired:
        return _step_up("/compte/mot-de-passe")
    if errors:
        verdict = evaluate(password, runtime(request).settings.passwords, await svc.context_for(actor.account_id))
        return render(request, "accounts/password_change.html", status_code=422, actor=actor, account=account,
                      errors=errors, verdict=verdict, end_others=end_others, nav="account")
    return redirect(request, "/compte", "Votre mot de passe est modifié." + (
        " Vos autres sessions sont fermées." if end_others else ""))


@post("/mot-de-passe/evaluer", name="password_meter", middleware=[auth_rate_limit.middleware])
async def password_meter(request: Request[Any, Any, Any], data: dict[str, Any] = Form) -> Template:
    """The meter fragment, as the person types (htmx); the submitted password is never logged or kept."""
    from convergences.web import current

    svc = _svc(request)
    found = await current(request)
    token = text(data, "token", 1000)
    if found is not None:
        context = await svc.context_for(found[0].account_id)
    elif token:
        context = await svc.context_for_token(token)
    else:
        context = []
    verdict = evaluate(_secret(data, "password"), runtime(request).settings.passwords, context)
    return render(request, "accounts/_password_meter.html", verdict=verdict)


# -- forgotten password --------------------------------------------------------------------------

@get("/mot-de-passe/oublie", name="password_forgot")
async def forgot_page(request: Request[Any, Any, Any]) -> Template:
    return render(request, "accounts/password_forgot.html", email="", errors={}, done=False)


@post("/mot-de-passe/oublie", name="password_forgot_post", middleware=[auth_rate_limit.middleware])
async def forgot_post(request: Request[Any, Any, Any], data: dict[str, Any] = Form) -> Template:
    email = text(data, "email", 254)
    if not email:
        return render(request, "accounts/password_forgot.html", status_code=422, email=email, done=False,
                      errors={"email": "Saisissez l'adresse électronique de votre compte."})
    await _svc(request).request_reset(email, client_ip(request))
    # The same answer whether or not the address belongs to an account.
    return render(request, "accounts/password_forgot.html", email="", errors={}, done=True, flash=FORGOT_DONE)


@get("/mot-de-passe/reinitialiser/{token:str}", name="password_reset")
async def reset_page(request: Request[Any, Any, Any], token: str) -> Template:
    account = await _svc(request).reset_account(token)
    if account is None:
        return render(request, "accounts/link_invalid.html", status_code=410, message=RESET_INVALID)
    return render(request, "accounts/password_reset.html", account=account, token=token, errors={}, verdict=None)


@post("/mot-de-passe/reinitialiser/{token:str}", name="password_reset_post", middleware=[auth_rate_limit.middleware])
async def reset_post(request: Request[Any, Any, Any], token: str, data: dict[str, Any] = Form) -> Response[Any]:
    svc = _svc(request)
    password = _secret(data, "password")
    errors = await svc.reset(token, password, _secret(data, "confirmation"), client_ip(request))
    if "token" in errors:
        return render(request, "accounts/link_invalid.html", status_code=410, message=errors["token"])
    if errors:
        account = await svc.reset_account(token)
        verdict = evaluate(password, runtime(request).settings.passwords, await svc.context_for_token(token))
        return render(request, "accounts/password_reset.html", status_code=422, account=account, token=token,
                      errors=errors, verdict=verdict)
    # No session is opened: the person logs in with the new password (and their second factor, if any).
    return redirect(request, "/login", "Votre nouveau mot de passe est enregistré et vos sessions sont fermées : "
                                       "connectez-vous avec ce nouveau mot de passe.")


# -- email ---------------------------------------------------------------------------------------

@get("/compte/adresse", name="email_change", dependencies=ACCOUNT_DEPS)
async def email_page(request: Request[Any, Any, Any], actor: Actor, account: Account) -> Response[Any]:
    if (stale := await _stale(request, actor, "/compte/adresse")) is not None:
        return stale
    return render(request, "accounts/email_change.html", actor=actor, account=account, email="", errors={},
                  nav="account")


@post("/compte/adresse", name="email_change_post", dependencies=ACCOUNT_DEPS)
async def email_post(request: Request[Any, Any, Any], actor: Actor, account: Account,
                     data: dict[str, Any] = Form) -> Response[Any]:
    email = text(data, "email", 254)
    try:
        errors = await _svc(request).request_email_change(actor, email)
    except StepUpRequired:
        return _step_up("/compte/adresse")
    if errors:
        return render(request, "accounts/email_change.html", status_code=422, actor=actor, account=account,
                      email=email, errors=errors, nav="account")
    return redirect(request, "/compte", "Un lien de confirmation a été envoyé à la nouvelle adresse. "
                                        "L'adresse de votre compte changera quand vous l'aurez ouvert.")


@get("/compte/adresse/confirmer/{token:str}", name="email_confirm")
async def email_confirm_page(request: Request[Any, Any, Any], token: str) -> Template:
    found = await _svc(request).email_link(token)
    if found is None:
        from convergences.accounts.credentials import EMAIL_INVALID

        return render(request, "accounts/link_invalid.html", status_code=410, message=EMAIL_INVALID)
    return render(request, "accounts/email_confirm.html", account=found[0], new_email=found[1], token=token)


@post("/compte/adresse/confirmer/{token:str}", name="email_confirm_post", middleware=[auth_rate_limit.middleware])
async def email_confirm_post(request: Request[Any, Any, Any], token: str) -> Response[Any]:
    error = await _svc(request).confirm_email(token, client_ip(request))
    if error:
        return render(request, "accounts/link_invalid.html", status_code=410, message=error)
    return redirect(request, "/compte", "Votre nouvelle adresse électronique est enregistrée : c'est désormais "
                                        "votre identifiant de connexion.")


# -- sessions ------------------------------------------------------------------------------------

@get("/compte/sessions", name="sessions", dependencies=ACCOUNT_DEPS)
async def sessions_page(request: Request[Any, Any, Any], actor: Actor, account: Account) -> Template:
    rows = await _svc(request).sessions(actor)
    return render(request, "accounts/sessions.html", actor=actor, account=account, rows=rows, nav="account")


@post("/compte/sessions/deconnecter", name="session_end", dependencies=ACCOUNT_DEPS)
async def session_end(request: Request[Any, Any, Any], actor: Actor, account: Account,
                      data: dict[str, Any] = Form) -> Response[Any]:
    rows = {r.handle: r for r in await _svc(request).sessions(actor)}
    handle = text(data, "session", 64)
    # Ending another session needs a recent authentication (ASVS 7.5.2); ending this one is a logout.
    if not (handle in rows and rows[handle].current) and (stale := await _stale(request, actor, "/compte/sessions")):
        return stale
    if not await _svc(request).end_session(actor, handle):
        return redirect(request, "/compte/sessions", "Cette session est déjà fermée.")
    if handle in rows and rows[handle].current:
        rt = runtime(request)
        response = redirect(request, "/login", "Vous êtes déconnecté(e).")
        response.cookies.append(Cookie(key=rt.settings.session_cookie, value="", path="/", max_age=0, httponly=True,
                                       samesite="lax", secure=rt.settings.secure_cookies))
        return response
    return redirect(request, "/compte/sessions", "La session est fermée.")


@post("/compte/sessions/autres", name="sessions_end_others", dependencies=ACCOUNT_DEPS)
async def sessions_end_others(request: Request[Any, Any, Any], actor: Actor, account: Account) -> Response[Any]:
    if stale := await _stale(request, actor, "/compte/sessions"):
        return stale
    count = await _svc(request).end_other_sessions(actor)
    return redirect(request, "/compte/sessions", f"Vos autres sessions sont fermées ({count}).")


# -- administrators' help on an agent's page -----------------------------------------------------

AGENT = "/employeurs/{employer_id:int}/agents/{membership_id:int}"


async def _admin_action(request: Request[Any, Any, Any], employer_id: int, membership_id: int, call: Any,
                        done: str) -> Response[Any]:
    back = f"/employeurs/{employer_id}/agents/{membership_id}"
    try:
        await call
    except ServiceError as exc:
        return redirect(request, back, exc.message)
    return redirect(request, back, done)


@post(AGENT + "/reinitialisation", name="agent_send_reset", dependencies={"actor": Provide(provide_actor)})
async def agent_send_reset(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                           membership_id: int) -> Response[Any]:
    return await _admin_action(request, employer_id, membership_id,
                               _svc(request).send_reset(actor, employer_id, membership_id),
                               "Un lien de réinitialisation du mot de passe (valable 15 minutes) a été envoyé à "
                               "l'agent. Vous ne connaîtrez pas son mot de passe.")


@post(AGENT + "/deconnecter", name="agent_end_sessions", dependencies={"actor": Provide(provide_actor)})
async def agent_end_sessions(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                             membership_id: int) -> Response[Any]:
    return await _admin_action(request, employer_id, membership_id,
                               _svc(request).end_all_sessions(actor, employer_id, membership_id),
                               "Toutes les sessions de l'agent sont fermées, applications comprises.")


router = Router(path="/", route_handlers=[
    account_page, password_page, password_post, password_meter, forgot_page, forgot_post, reset_page, reset_post,
    email_page, email_post, email_confirm_page, email_confirm_post, sessions_page, session_end,
    sessions_end_others, agent_send_reset, agent_end_sessions])
