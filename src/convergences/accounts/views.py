"""Login, logout, invitations, and "Mes services"."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.params import Body, Parameter
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy import text as sql_text

from convergences.accounts.services import AuthService
from convergences.applications.services import PortalService
from convergences.authz import Actor
from convergences.db import transaction
from convergences.mail.models import OutboxMail
from convergences.security.throttle import DEVICE_COOKIE, DEVICE_DAYS
from convergences.web import client_ip, current, provide_actor, redirect, render, runtime, safe_next, text

Form = Body(media_type=RequestEncodingType.URL_ENCODED)
# Anti-automation on the credential endpoints, on top of the per-account/IP throttling.
auth_rate_limit = RateLimitConfig(rate_limit=("minute", 60), store="rate_limit")


@get("/", name="home")
async def home(request: Request[Any, Any, Any]) -> Redirect:
    found = await current(request)
    if found is None:
        return Redirect("/login")
    actor = found[0]
    if actor.is_cig_admin:
        return Redirect("/admin")
    if actor.is_correspondent:
        return Redirect("/portefeuille")
    return Redirect("/services")


@get("/login", name="login")
async def login_page(request: Request[Any, Any, Any],
                     next_: str | None = Parameter(query="next", default=None),
                     reauth: str | None = None, login_hint: str | None = None) -> Template | Redirect:
    # reauth: an application asked for a fresh login (prompt=login, max_age): show the form anyway.
    if await current(request) is not None and not reauth:
        return Redirect(safe_next(next_, "/"))
    return render(request, "accounts/login.html", next=safe_next(next_, "/"), email=(login_hint or "")[:254],
                  error=None)


@post("/login", name="login_post", middleware=[auth_rate_limit.middleware])
async def login_post(request: Request[Any, Any, Any], data: dict[str, Any] = Form) -> Response[Any]:
    rt = runtime(request)
    email, password = text(data, "email", 254), str(data.get("password", ""))[:4096]
    # An application's authorization request can be long (PKCE, nonce, claims…): keep it whole.
    target = safe_next(text(data, "next", 8000), "/")
    if not email or not password:
        return render(request, "accounts/login.html", status_code=422, next=target, email=email,
                      error="Saisissez votre adresse électronique et votre mot de passe.")
    result = await AuthService(rt).login(email, password, client_ip(request), request.headers.get("user-agent"),
                                         previous_cookie=request.cookies.get(rt.settings.session_cookie),
                                         device_cookie=request.cookies.get(DEVICE_COOKIE))
    if not result.ok:
        status = 429 if result.wait_seconds else 401
        return render(request, "accounts/login.html", status_code=status, next=target, email=email,
                      error=result.message)
    if result.pending:  # a second step follows (convergences.mfa): no session yet
        from convergences.mfa.views import pending_response

        return pending_response(request, result, target)
    response = Redirect(target, status_code=303)
    response.cookies.append(Cookie(key=rt.settings.session_cookie, value=result.cookie_value, path="/",
                                   httponly=True, samesite="lax", secure=rt.settings.secure_cookies))
    # This browser is now a known device of the account: a flood of failures elsewhere never slows it.
    response.cookies.append(Cookie(key=DEVICE_COOKIE, value=result.device_cookie, path="/", httponly=True,
                                   samesite="lax", secure=rt.settings.secure_cookies, max_age=DEVICE_DAYS * 86400))
    return response


@post("/logout", name="logout")
async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
    rt = runtime(request)
    found = await current(request)
    if found is not None:
        await AuthService(rt).logout(found[0])
    response = redirect(request, "/login", "Vous êtes déconnecté(e).")
    response.cookies.append(Cookie(key=rt.settings.session_cookie, value="", path="/", max_age=0, httponly=True,
                                   samesite="lax", secure=rt.settings.secure_cookies))
    return response


@get("/invitation/{token:str}", name="invitation")
async def invitation_page(request: Request[Any, Any, Any], token: str) -> Template:
    account = await AuthService(runtime(request)).invitation_account(token)
    if account is None:
        return render(request, "accounts/invitation_invalid.html", status_code=410)
    return render(request, "accounts/invitation.html", account=account, token=token, errors={})


@post("/invitation/{token:str}", name="invitation_post", middleware=[auth_rate_limit.middleware])
async def invitation_post(request: Request[Any, Any, Any], token: str,
                          data: dict[str, Any] = Form) -> Response[Any]:
    from convergences.accounts.credentials import CredentialService
    from convergences.security.strength import evaluate

    rt = runtime(request)
    service = AuthService(rt)
    password = str(data.get("password", ""))[:4096]
    errors = await service.accept_invitation(token, password, str(data.get("confirmation", ""))[:4096],
                                             client_ip(request))
    if "token" in errors:
        return render(request, "accounts/invitation_invalid.html", status_code=410)
    if errors:
        account = await service.invitation_account(token)
        # The meter without JavaScript: the verdict and its reasons, in French.
        verdict = evaluate(password, rt.settings.passwords, await CredentialService(rt).context_for_token(token))
        return render(request, "accounts/invitation.html", status_code=422, account=account, token=token,
                      errors=errors, verdict=verdict)
    return redirect(request, "/login", "Votre mot de passe est enregistré : vous pouvez vous connecter.")


@get("/services", name="services", dependencies={"actor": Provide(provide_actor)})
async def my_services(request: Request[Any, Any, Any], actor: Actor) -> Template:
    groups = await PortalService(runtime(request)).my_services(actor)
    return render(request, "accounts/services.html", actor=actor, groups=groups)


@get("/healthz", name="healthz")
async def healthz(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    try:
        async with transaction(runtime(request).maker) as db:
            await db.execute(sql_text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any database failure means "not healthy"
        return Response({"status": "base de données injoignable"}, status_code=503)
    return Response({"status": "ok"})


@get("/demo/boite-mail", name="demo_mailbox")
async def demo_mailbox(request: Request[Any, Any, Any]) -> Template:
    """Demo mode only: what the portal has sent (no SMTP server needed to try it)."""
    rt = runtime(request)
    if not rt.settings.demo:
        from convergences.errors import NotFound

        raise NotFound()
    async with transaction(rt.maker) as db:
        mails = (await db.scalars(select(OutboxMail).order_by(OutboxMail.id.desc()).limit(50))).all()
    return render(request, "accounts/mailbox.html", mails=mails)


router = Router(path="/", route_handlers=[home, login_page, login_post, logout, invitation_page, invitation_post,
                                          my_services, healthz, demo_mailbox])
