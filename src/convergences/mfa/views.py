"""Pages of the second factor: the login's second step and forced enrolment, the person's own factors,
step-up re-authentication, login history, and the employer's policy and reset actions."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.di import Provide
from litestar.response import Redirect, Template
from markupsafe import Markup

from convergences.accounts.models import Account
from convergences.accounts.services import LoginResult
from convergences.accounts.views import Form, auth_rate_limit
from convergences.authz import Actor
from convergences.db import transaction
from convergences.mfa.history import login_history
from convergences.mfa.passkey_views import HANDLERS as PASSKEY_HANDLERS
from convergences.mfa.passkey_views import login_cookies
from convergences.mfa.policy import ENROL, PENDING_COOKIE
from convergences.mfa.services import Enrolment, MfaService
from convergences.security.models import LoginSession
from convergences.security.stepup import REAUTH_PATH, is_recent, reauth_url
from convergences.security.throttle import DEVICE_COOKIE
from convergences.web import client_ip, provide_actor, redirect, render, runtime, safe_next, text

MANAGE = "/compte/double-authentification"
ACTOR = {"actor": Provide(provide_actor)}


def _svc(request: Request[Any, Any, Any]) -> MfaService:
    return MfaService(runtime(request), device_cookie=request.cookies.get(DEVICE_COOKIE))


def _pending_cookie(request: Request[Any, Any, Any], value: str, max_age: int | None = None) -> Cookie:
    return Cookie(key=PENDING_COOKIE, value=value, path="/login", httponly=True, samesite="lax",
                  secure=runtime(request).settings.secure_cookies, max_age=max_age)


def pending_response(request: Request[Any, Any, Any], result: LoginResult, target: str) -> Response[Any]:
    """After a right password when a second step follows: the half-authenticated cookie, then its page."""
    page = "/login/enrolement" if result.next_step == ENROL else "/login/second-facteur"
    response = Redirect(page + "?" + _next_query(target), status_code=303)
    response.cookies.append(_pending_cookie(request, result.pending, max_age=300))
    return response


def _next_query(target: str) -> str:
    return urlencode({"next": target})


def _logged_in(request: Request[Any, Any, Any], result: LoginResult, response: Response[Any]) -> Response[Any]:
    response.cookies.extend(login_cookies(request, result))
    return response


def _enrol_context(enrolment: Enrolment) -> dict[str, Any]:
    secret = enrolment.secret
    return {"token": enrolment.token, "svg": Markup(enrolment.svg),  # noqa: S704 - segno's own SVG markup
            "secret_groups": " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))}


# -- the login's second step ---------------------------------------------------------------------

@get("/login/second-facteur", name="mfa_factor")
async def factor_page(request: Request[Any, Any, Any]) -> Response[Any]:
    target = safe_next(request.query_params.get("next"), "/")
    if await _svc(request).pending_account(request.cookies.get(PENDING_COOKIE), "factor") is None:
        return redirect(request, "/login?" + _next_query(target), "Votre connexion a expiré : recommencez.")
    return render(request, "mfa/factor.html", next=target, error=None)


@post("/login/second-facteur", name="mfa_factor_post", middleware=[auth_rate_limit.middleware])
async def factor_post(request: Request[Any, Any, Any], data: dict[str, Any] = Form) -> Response[Any]:
    rt = runtime(request)
    target = safe_next(text(data, "next", 8000), "/")
    result = await _svc(request).second_step(
        request.cookies.get(PENDING_COOKIE), text(data, "code", 60), client_ip(request),
        request.headers.get("user-agent"), request.cookies.get(rt.settings.session_cookie))
    if not result.ok:
        status = 429 if result.wait_seconds else 401
        return render(request, "mfa/factor.html", status_code=status, next=target, error=result.message)
    return _logged_in(request, result, Redirect(target, status_code=303))


@get("/login/enrolement", name="mfa_enrol_at_login")
async def enrol_at_login_page(request: Request[Any, Any, Any]) -> Response[Any]:
    target = safe_next(request.query_params.get("next"), "/")
    svc = _svc(request)
    account = await svc.pending_account(request.cookies.get(PENDING_COOKIE), ENROL)
    if account is None:
        return redirect(request, "/login?" + _next_query(target), "Votre connexion a expiré : recommencez.")
    return render(request, "mfa/enrol.html", action="/login/enrolement", next=target, errors={}, label="",
                  forced=True, **_enrol_context(svc.start_enrolment(account)))


@post("/login/enrolement", name="mfa_enrol_at_login_post", middleware=[auth_rate_limit.middleware])
async def enrol_at_login_post(request: Request[Any, Any, Any], data: dict[str, Any] = Form) -> Response[Any]:
    rt = runtime(request)
    svc = _svc(request)
    target = safe_next(text(data, "next", 8000), "/")
    token, label = text(data, "token", 2000), text(data, "label", 100)
    errors, result, codes = await svc.enrol_at_login(
        request.cookies.get(PENDING_COOKIE), token, text(data, "code", 20), label, client_ip(request),
        request.headers.get("user-agent"), request.cookies.get(rt.settings.session_cookie))
    if result is not None and not result.ok:
        return redirect(request, "/login?" + _next_query(target), result.message)
    if errors:
        account = await svc.pending_account(request.cookies.get(PENDING_COOKIE), ENROL)
        enrolment = svc.enrolment_from_token(account, token) if account else None
        if account is None:
            return redirect(request, "/login?" + _next_query(target), "Votre connexion a expiré : recommencez.")
        enrolment = enrolment or svc.start_enrolment(account)
        return render(request, "mfa/enrol.html", status_code=422, action="/login/enrolement", next=target,
                      errors=errors, label=label, forced=True, **_enrol_context(enrolment))
    assert result is not None
    page = render(request, "mfa/recovery_codes.html", codes=codes, next=target, actor=None)
    return _logged_in(request, result, page)


# -- step-up -------------------------------------------------------------------------------------

async def step_up(request: Request[Any, Any, Any], actor: Actor, back: str) -> Response[Any] | None:
    """A redirect to the re-authentication page when the session's last authentication is older than
    10 minutes, else None."""
    async with transaction(runtime(request).maker) as db:
        session = await db.get(LoginSession, actor.session_id)
    if session is not None and is_recent(session):
        return None
    return redirect(request, reauth_url(back))


@get(REAUTH_PATH, name="reauth")
async def reauth_page(request: Request[Any, Any, Any], actor: Actor) -> Template:
    target = safe_next(request.query_params.get("next"), MANAGE)
    kinds = await _svc(request).factor_kinds(actor.account_id)
    return render(request, "mfa/reauth.html", actor=actor, next=target, error=None, needs_code=bool(kinds),
                  has_passkey="webauthn" in kinds)


@post(REAUTH_PATH, name="reauth_post", middleware=[auth_rate_limit.middleware])
async def reauth_post(request: Request[Any, Any, Any], actor: Actor, data: dict[str, Any] = Form) -> Response[Any]:
    svc = _svc(request)
    target = safe_next(text(data, "next", 2000), MANAGE)
    error = await svc.reauthenticate(actor, str(data.get("password", ""))[:4096], text(data, "code", 60))
    if error:
        kinds = await svc.factor_kinds(actor.account_id)
        return render(request, "mfa/reauth.html", status_code=401, actor=actor, next=target, error=error,
                      needs_code=bool(kinds), has_passkey="webauthn" in kinds)
    return redirect(request, target)


# -- the person's own factors --------------------------------------------------------------------

@get(MANAGE, name="mfa_manage")
async def manage(request: Request[Any, Any, Any], actor: Actor) -> Template:
    overview = await _svc(request).overview(actor.account_id, actor.session_id)
    return render(request, "mfa/manage.html", actor=actor, overview=overview, error=None)


@get(MANAGE + "/application", name="mfa_totp_add")
async def totp_page(request: Request[Any, Any, Any], actor: Actor) -> Response[Any]:
    if (back := await step_up(request, actor, MANAGE + "/application")) is not None:
        return back
    svc = _svc(request)
    async with transaction(runtime(request).maker) as db:
        account = await db.get(Account, actor.account_id)
    assert account is not None
    return render(request, "mfa/enrol.html", actor=actor, action=MANAGE + "/application", next=MANAGE, errors={},
                  label="", forced=False, **_enrol_context(svc.start_enrolment(account)))


@post(MANAGE + "/application", name="mfa_totp_add_post")
async def totp_post(request: Request[Any, Any, Any], actor: Actor, data: dict[str, Any] = Form) -> Response[Any]:
    if (back := await step_up(request, actor, MANAGE + "/application")) is not None:
        return back
    svc = _svc(request)
    token, label = text(data, "token", 2000), text(data, "label", 100)
    errors, codes = await svc.enrol(actor, token, text(data, "code", 20), label)
    if errors:
        async with transaction(runtime(request).maker) as db:
            account = await db.get(Account, actor.account_id)
        assert account is not None
        enrolment = svc.enrolment_from_token(account, token) or svc.start_enrolment(account)
        return render(request, "mfa/enrol.html", status_code=422, actor=actor, action=MANAGE + "/application",
                      next=MANAGE, errors=errors, label=label, forced=False, **_enrol_context(enrolment))
    if not codes:
        return redirect(request, MANAGE, "L'application d'authentification est enregistrée.")
    return render(request, "mfa/recovery_codes.html", actor=actor, codes=codes, next=MANAGE)


@post(MANAGE + "/codes-de-secours", name="mfa_recovery_regenerate")
async def recovery_regenerate(request: Request[Any, Any, Any], actor: Actor) -> Response[Any]:
    if (back := await step_up(request, actor, MANAGE)) is not None:
        return back
    codes = await _svc(request).regenerate_recovery_codes(actor)
    return render(request, "mfa/recovery_codes.html", actor=actor, codes=codes, next=MANAGE)


@post(MANAGE + "/{factor_id:int}/supprimer", name="mfa_factor_remove")
async def factor_remove(request: Request[Any, Any, Any], actor: Actor, factor_id: int) -> Response[Any]:
    if (back := await step_up(request, actor, MANAGE)) is not None:
        return back
    svc = _svc(request)
    error = await svc.remove_factor(actor, factor_id)
    if error:
        return render(request, "mfa/manage.html", status_code=422, actor=actor,
                      overview=await svc.overview(actor.account_id, actor.session_id), error=error)
    return redirect(request, MANAGE, "Le moyen d'authentification est supprimé.")


@get("/compte/historique", name="login_history")
async def history(request: Request[Any, Any, Any], actor: Actor) -> Template:
    return render(request, "mfa/history.html", actor=actor, rows=await login_history(runtime(request), actor))


# -- employer side: the policy and the reset -----------------------------------------------------

POLICY = "/employeurs/{employer_id:int}/double-authentification"


@get(POLICY, name="mfa_employer_policy")
async def policy_page(request: Request[Any, Any, Any], actor: Actor, employer_id: int) -> Template:
    employer = await _svc(request).employer_policy(actor, employer_id)
    return render(request, "mfa/employer_policy.html", actor=actor, employer=employer)


@post(POLICY, name="mfa_employer_policy_post")
async def policy_post(request: Request[Any, Any, Any], actor: Actor, employer_id: int,
                      data: dict[str, Any] = Form) -> Response[Any]:
    await _svc(request).set_employer_policy(actor, employer_id, text(data, "required", 5) == "1")
    return redirect(request, f"/employeurs/{employer_id}/double-authentification", "La règle est enregistrée.")


@post("/employeurs/{employer_id:int}/agents/{membership_id:int}/double-authentification/reinitialiser",
      name="mfa_reset")
async def reset(request: Request[Any, Any, Any], actor: Actor, employer_id: int, membership_id: int) -> Response[Any]:
    account = await _svc(request).reset(actor, employer_id, membership_id)
    return redirect(request, f"/employeurs/{employer_id}/agents/{membership_id}",
                    f"La double authentification de {account.full_name} est réinitialisée : un nouvel "
                    "enrôlement lui sera demandé à sa prochaine connexion.")


router = Router(path="/", dependencies=ACTOR, route_handlers=[
    factor_page, factor_post, enrol_at_login_page, enrol_at_login_post, reauth_page, reauth_post, manage,
    totp_page, totp_post, recovery_regenerate, factor_remove, history, policy_page, policy_post, reset,
    *PASSKEY_HANDLERS])
