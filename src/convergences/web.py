"""Request-level helpers: the Actor built once per request, page-or-fragment rendering, flash, forms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template
from litestar_htmx import ClientRedirect

from convergences.accounts.models import Account
from convergences.authz import Actor
from convergences.runtime import Runtime
from convergences.security.tokens import Signer

FLASH_COOKIE = "cvg_flash"


class NotAuthenticated(Exception):
    """No live login session: the page redirects to the login form."""


def runtime(request: Request[Any, Any, Any]) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def client_ip(request: Request[Any, Any, Any]) -> str | None:
    return request.client.host if request.client else None


async def current(request: Request[Any, Any, Any]) -> tuple[Actor, Account] | None:
    """The (actor, account) of this request, computed once and cached on the request state."""
    if "current" not in request.state:
        from convergences.accounts.services import AuthService

        rt = runtime(request)
        request.state.current = await AuthService(rt).current(
            request.cookies.get(rt.settings.session_cookie), client_ip(request),
            request.headers.get("user-agent"))
    return request.state.current  # type: ignore[no-any-return]


async def provide_actor(request: Request[Any, Any, Any]) -> Actor:
    """Dependency for every page behind the login."""
    found = await current(request)
    if found is None:
        raise NotAuthenticated()
    return found[0]


async def provide_account(request: Request[Any, Any, Any]) -> Account:
    found = await current(request)
    if found is None:
        raise NotAuthenticated()
    return found[1]


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true" and request.headers.get("hx-boosted") != "true"


def render(request: Request[Any, Any, Any], template_name: str, fragment: str | None = None, *,
           status_code: int = 200, **context: Any) -> Template:
    """Render the whole page, or only the fragment when htmx asked for it."""
    name = fragment if fragment and is_htmx(request) else template_name
    context.setdefault("flash", pop_flash(request))
    response = Template(template_name=name, context=context, status_code=status_code)
    if context["flash"]:
        response.cookies.append(Cookie(key=FLASH_COOKIE, value="", max_age=0, path="/", httponly=True))
    return response


def _flash_signer(request: Request[Any, Any, Any]) -> Signer:
    return Signer(runtime(request).settings.secret_key, "convergences.flash")


def pop_flash(request: Request[Any, Any, Any]) -> str | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    value = _flash_signer(request).loads(raw, max_age=300)
    return value if isinstance(value, str) else None


def redirect(request: Request[Any, Any, Any], url: str, flash: str | None = None) -> Response[Any]:
    """303 after a successful POST (or HX-Redirect for htmx), with an optional one-time message."""
    response: Response[Any] = ClientRedirect(url) if is_htmx(request) else Redirect(url, status_code=303)
    if flash:
        secure = runtime(request).settings.secure_cookies
        response.cookies.append(Cookie(key=FLASH_COOKIE, value=_flash_signer(request).dumps(flash), path="/",
                                       httponly=True, samesite="lax", secure=secure, max_age=300))
    return response


def safe_next(url: str | None, default: str = "/services") -> str:
    """Only local paths are followed after login (no open redirect)."""
    if not url:
        return default
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return default
    return url


def login_url(request: Request[Any, Any, Any]) -> str:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    return "/login?next=" + quote(path, safe="")


def text(form: Mapping[str, Any], name: str, limit: int = 200) -> str:
    value = form.get(name, "")
    if isinstance(value, list):
        value = value[-1] if value else ""
    return str(value).strip()[:limit]


def int_list(form: Any, name: str) -> list[int]:
    values = form.getall(name, []) if hasattr(form, "getall") else form.get(name, [])
    if isinstance(values, str):
        values = [values]
    result = []
    for value in values:
        try:
            result.append(int(value))
        except (TypeError, ValueError):
            continue
    return result


def page_number(raw: str | None) -> int:
    try:
        return max(1, min(int(raw or 1), 100000))
    except ValueError:
        return 1
