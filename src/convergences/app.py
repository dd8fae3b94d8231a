"""create_app(settings): plugins, template engine, HTMX, CSRF, security headers, error pages, routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Litestar, Request, Response
from litestar.config.csrf import CSRFConfig
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.datastructures import MutableScopeHeaders
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.plugins.htmx import HTMXPlugin
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.stores.memory import MemoryStore
from litestar.template.config import TemplateConfig
from litestar.types import Message, Scope
from litestar_htmx import ClientRedirect

from convergences.audit.actions import LABELS
from convergences.authz import NotAuthorized, Permission, may
from convergences.employers.models import EMPLOYER_KINDS
from convergences.errors import NotFound
from convergences.logs import install_redaction
from convergences.runtime import TEMPLATES_DIR, Runtime
from convergences.settings import Settings, load_settings
from convergences.web import NotAuthenticated, is_htmx, login_url

STATIC_DIR = Path(__file__).parent / "static"
PARIS = ZoneInfo("Europe/Paris")
log = logging.getLogger("convergences")

CSP_BASE = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
CSP = CSP_BASE + "; form-action 'self'"
# Pages whose forms lead, through redirects, to an application's registered redirect URI (login during
# an authorization request, employer choice, logout confirmation): browsers apply form-action to the
# whole redirect chain, so it would block the hop to the application. Those redirects are themselves
# limited to exact registered URIs by the provider.
FORM_TO_APPLICATIONS = ("/login", "/oidc/authorize", "/oidc/employeur", "/oidc/logout")


def security_headers(settings: Settings) -> Any:
    """before_send hook: CSP without inline script, nosniff, referrer policy, framing, no-store, HSTS.

    A hook rather than a middleware: it also reaches the router's own 404/405 answers, which no
    route middleware sees.
    """

    async def hook(message: Message, scope: Scope) -> None:
        if scope["type"] != "http" or message["type"] != "http.response.start":
            return
        headers = MutableScopeHeaders.from_message(message)
        path = scope["path"]
        headers.setdefault("Content-Security-Policy", CSP_BASE if path.startswith(FORM_TO_APPLICATIONS) else CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if not scope["path"].startswith("/static/"):
            headers["Cache-Control"] = "no-store"
        if settings.secure_cookies:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")

    return hook


def _error_page(request: Request[Any, Any, Any], status: int, title: str, message: str) -> Response[Any]:
    return Template(template_name="errors/error.html", status_code=status,
                    context={"title": title, "message": message, "status": status,
                             "actor": (request.state.current or (None,))[0] if "current" in request.state
                             else None})


def not_authenticated(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    target = login_url(request) if request.method == "GET" else "/login"
    return ClientRedirect(target) if is_htmx(request) else Redirect(target, status_code=303)


def not_authorized(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.info("authorization refused: %s %s (%s)", request.method, request.url.path, exc)
    return _error_page(request, 403, "Accès refusé",
                       "Vous n'avez pas les droits nécessaires pour cette page. Si vous pensez qu'il s'agit "
                       "d'une erreur, contactez votre référent administrateur ou votre correspondant CIG.")


def not_found(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _error_page(request, 404, "Page introuvable",
                       "Cette page n'existe pas ou n'est pas accessible avec votre compte.")


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status == 404:
        return not_found(request, exc)
    if status == 403:
        # CSRF failures land here: say so plainly.
        detail = str(exc.detail or "")
        if "CSRF" in detail:
            return _error_page(request, 403, "Formulaire expiré",
                               "Le formulaire a expiré ou n'a pas été envoyé depuis cette page. "
                               "Rechargez la page puis recommencez.")
        return not_authorized(request, exc)
    if status == 429:
        return _error_page(request, 429, "Trop de requêtes",
                           "Trop de requêtes en peu de temps. Patientez une minute puis réessayez.")
    if status in (400, 405, 413, 415):
        return _error_page(request, status, "Requête incorrecte",
                           "La requête envoyée n'est pas valide. Revenez à la page précédente et réessayez.")
    return server_error(request, exc)


def server_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_page(request, 500, "Erreur technique",
                       "Une erreur technique est survenue ; rien n'a été enregistré. Réessayez dans un instant.")


def _local(value: datetime | None, fmt: str = "%d/%m/%Y %H:%M") -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(PARIS).strftime(fmt)


def _configure_templates(engine: JinjaTemplateEngine, settings: Settings | None = None) -> None:
    env = engine.engine
    if settings is not None:
        from convergences.maintenance.inactivity import inactivity_label

        env.globals["inactive_since"] = inactivity_label(settings)
    env.filters["local"] = _local
    env.globals["action_label"] = lambda tag: LABELS.get(tag, tag)
    env.globals["employer_kinds"] = EMPLOYER_KINDS
    env.globals["may"] = may
    env.globals["P"] = Permission
    env.globals["htmx_js"] = "/static/htmx-2.0.11.min.js"
    env.globals["status_labels"] = {"invited": "Invité", "active": "Actif", "suspended": "Suspendu"}
    env.globals["role_labels"] = {"agent": "Agent", "referent": "Référent administrateur",
                                  "authority": "Autorité territoriale", "correspondent": "Correspondant CIG",
                                  "cig_admin": "Administrateur CIG"}
    env.trim_blocks = True
    env.lstrip_blocks = True


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Litestar:
    settings = settings or load_settings()
    install_redaction()
    from convergences.accounts.account_views import router as account_router
    from convergences.accounts.views import router as accounts_router
    from convergences.admin.views import router as admin_router
    from convergences.employers.views import router as employers_router
    from convergences.mfa.views import router as mfa_router
    from convergences.oidc.views import CSRF_EXEMPT
    from convergences.oidc.views import router as oidc_router
    from convergences.privacy.views import router as privacy_router
    from convergences.reviews.views import router as reviews_router
    from convergences.rgpd.views import router as rgpd_router

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Built on the serving event loop: a connection pool must not cross loops.
        rt = runtime or Runtime.build(settings)
        app.state.runtime = rt
        rt.mailer.kick()
        rt.mailer.start_periodic()
        try:
            yield
        finally:
            if runtime is None:
                await rt.close()

    template_config = TemplateConfig(directory=TEMPLATES_DIR, engine=JinjaTemplateEngine,
                                     engine_callback=lambda engine: _configure_templates(engine, settings))
    csrf = CSRFConfig(secret=settings.secret_key, cookie_name="cvg_csrf", cookie_secure=settings.secure_cookies,
                      cookie_httponly=True, cookie_samesite="lax", exclude=["^/healthz/?$", *CSRF_EXEMPT])
    app = Litestar(
        route_handlers=[accounts_router, account_router, employers_router, admin_router, oidc_router, reviews_router,
                        privacy_router, rgpd_router, mfa_router,
                        create_static_files_router(path="/static", directories=[STATIC_DIR], name="static",
                                                   cache_control=None, include_in_schema=False)],
        lifespan=[lifespan],
        plugins=[HTMXPlugin()],
        template_config=template_config,
        csrf_config=csrf,
        before_send=[security_headers(settings)],
        stores={"rate_limit": MemoryStore()},
        exception_handlers={
            NotAuthenticated: not_authenticated,
            NotAuthorized: not_authorized,
            NotFound: not_found,
            NotFoundException: not_found,
            PermissionDeniedException: http_error,
            HTTPException: http_error,
            Exception: server_error,
        },
        # The schema is published as JSON only: the HTML viewers load scripts from CDNs (CSP).
        openapi_config=OpenAPIConfig(title="Convergences", version="0.1.0", path="/schema",
                                     render_plugins=[JsonRenderPlugin()]),
        debug=False,
    )
    return app
