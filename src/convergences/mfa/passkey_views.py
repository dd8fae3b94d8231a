"""JSON endpoints of the passkey script (static/mfa-webauthn.js): options, then the signed credential."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.datastructures import Cookie

from convergences.accounts.services import LoginResult
from convergences.accounts.views import auth_rate_limit
from convergences.authz import Actor
from convergences.db import transaction
from convergences.mfa.passkeys import PASSKEY_FAILED, PasskeyService
from convergences.mfa.policy import FACTOR, PENDING_COOKIE, read_pending
from convergences.mfa.services import MfaService
from convergences.security.models import LoginSession
from convergences.security.stepup import is_recent, reauth_url
from convergences.security.throttle import DEVICE_COOKIE, DEVICE_DAYS
from convergences.web import client_ip, runtime, safe_next

CHALLENGE_COOKIE = "cvg_webauthn"
MANAGE = "/compte/double-authentification"


def _json(request: Request[Any, Any, Any], content: Any, status: int = 200, challenge: str | None = None
          ) -> Response[Any]:
    response: Response[Any] = Response(content=content, status_code=status, media_type="application/json")
    if challenge is not None:
        response.cookies.append(Cookie(key=CHALLENGE_COOKIE, value=challenge, path="/", httponly=True,
                                       samesite="strict", secure=runtime(request).settings.secure_cookies,
                                       max_age=300))
    return response


def _credential(data: Any) -> dict[str, Any]:
    value = data.get("credential") if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


@post("/login/cle-d-acces/options", name="passkey_login_options", middleware=[auth_rate_limit.middleware])
async def login_options(request: Request[Any, Any, Any], data: dict[str, Any]) -> Response[Any]:
    """Passwordless (any discoverable passkey of this site), or the pending account's own passkeys."""
    rt = runtime(request)
    account_id = None
    if data.get("mode") == "second-factor":
        pending = read_pending(rt, request.cookies.get(PENDING_COOKIE))
        if pending is None or pending[1] != FACTOR:
            return _json(request, {"error": "Votre connexion a expiré : recommencez."}, 401)
        account_id = pending[0]
    options, challenge = await PasskeyService(rt).authentication_options(account_id)
    return _json(request, options, challenge=challenge)


@post("/login/cle-d-acces", name="passkey_login", middleware=[auth_rate_limit.middleware])
async def login(request: Request[Any, Any, Any], data: dict[str, Any]) -> Response[Any]:
    rt = runtime(request)
    target = safe_next(str(data.get("next") or "/")[:8000], "/")
    result = await MfaService(rt, device_cookie=request.cookies.get(DEVICE_COOKIE)).passkey_login(
        request.cookies.get(PENDING_COOKIE), request.cookies.get(CHALLENGE_COOKIE), _credential(data),
        client_ip(request), request.headers.get("user-agent"), request.cookies.get(rt.settings.session_cookie))
    if not result.ok:
        return _json(request, {"error": result.message}, 429 if result.wait_seconds else 401)
    response = _json(request, {"redirect": target}, challenge="")
    response.cookies.extend(login_cookies(request, result))
    return response


def login_cookies(request: Request[Any, Any, Any], result: LoginResult) -> list[Cookie]:
    """A completed login: the new session, the half-authenticated state cleared, and this browser becomes a
    known device of the account (security/throttle.py: failures elsewhere never slow it)."""
    secure = runtime(request).settings.secure_cookies
    cookies = [Cookie(key=runtime(request).settings.session_cookie, value=result.cookie_value, path="/",
                      httponly=True, samesite="lax", secure=secure),
               Cookie(key=PENDING_COOKIE, value="", path="/login", max_age=0, httponly=True, samesite="lax",
                      secure=secure)]
    if result.device_cookie:
        cookies.append(Cookie(key=DEVICE_COOKIE, value=result.device_cookie, path="/", httponly=True,
                              samesite="lax", secure=secure, max_age=DEVICE_DAYS * 86400))
    return cookies


async def _recent(request: Request[Any, Any, Any], actor: Actor) -> bool:
    async with transaction(runtime(request).maker) as db:
        session = await db.get(LoginSession, actor.session_id)
    return session is not None and is_recent(session)


@post(MANAGE + "/cle-d-acces/options", name="passkey_register_options")
async def register_options(request: Request[Any, Any, Any], actor: Actor) -> Response[Any]:
    if not await _recent(request, actor):
        return _json(request, {"redirect": reauth_url(MANAGE)}, 403)
    options, challenge = await PasskeyService(runtime(request)).registration_options(actor)
    return _json(request, options, challenge=challenge)


@post(MANAGE + "/cle-d-acces", name="passkey_register")
async def register(request: Request[Any, Any, Any], actor: Actor, data: dict[str, Any]) -> Response[Any]:
    if not await _recent(request, actor):
        return _json(request, {"redirect": reauth_url(MANAGE)}, 403)
    error, codes = await PasskeyService(runtime(request)).register(
        actor, request.cookies.get(CHALLENGE_COOKIE), _credential(data), str(data.get("label") or "")[:100].strip())
    if error:
        return _json(request, {"error": error}, 400)
    return _json(request, {"redirect": MANAGE, "codes": codes}, challenge="")


@post("/compte/reauthentification/cle-d-acces/options", name="passkey_reauth_options")
async def reauth_options(request: Request[Any, Any, Any], actor: Actor) -> Response[Any]:
    options, challenge = await PasskeyService(runtime(request)).authentication_options(actor.account_id,
                                                                                       require_uv=True)
    return _json(request, options, challenge=challenge)


@post("/compte/reauthentification/cle-d-acces", name="passkey_reauth")
async def reauth(request: Request[Any, Any, Any], actor: Actor, data: dict[str, Any]) -> Response[Any]:
    ok = await MfaService(runtime(request)).reauthenticate_with_passkey(
        actor, request.cookies.get(CHALLENGE_COOKIE), _credential(data))
    if not ok:
        return _json(request, {"error": PASSKEY_FAILED}, 401)
    return _json(request, {"redirect": safe_next(str(data.get("next") or MANAGE)[:2000], MANAGE)}, challenge="")


HANDLERS = [login_options, login, register_options, register, reauth_options, reauth]
