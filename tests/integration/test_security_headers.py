"""Security headers on every page (CSP without inline script, nosniff, referrer policy, no-store, HSTS over
https), pages that respect the CSP, and /healthz."""

from __future__ import annotations

import re
from pathlib import Path

from litestar.testing import AsyncTestClient

from convergences.app import create_app
from convergences.runtime import Runtime
from convergences.settings import DatabaseSettings, MailSettings, Settings
from tests.conftest import settings_with
from tests.helpers import REFERENT, Browser, employer_id, logged_in


def csp(response) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    header = response.headers["content-security-policy"]
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


def check_headers(response, url: str) -> None:  # type: ignore[no-untyped-def]
    policy = csp(response)
    assert "'unsafe-inline'" not in response.headers["content-security-policy"], url
    assert "'unsafe-eval'" not in response.headers["content-security-policy"], url
    assert policy.get("object-src") == ["'none'"], url
    assert policy.get("base-uri") == ["'none'"], url
    assert policy.get("frame-ancestors") == ["'none'"], url
    # Scripts only from our own origin (no inline, no CDN).
    script = policy.get("script-src", policy.get("default-src"))
    assert script == ["'self'"], url
    assert response.headers["x-content-type-options"] == "nosniff", url
    assert response.headers["referrer-policy"] in {"no-referrer", "same-origin", "strict-origin-when-cross-origin",
                                                   "strict-origin"}, url
    assert "no-store" in response.headers["cache-control"], url


def check_page_respects_csp(html: str, url: str) -> None:
    for tag in re.findall(r"<script\b[^>]*>", html, flags=re.I):
        assert re.search(r"\ssrc=\"/static/", tag), (url, tag)
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html), url  # no inline code between script tags
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.I), url  # no inline event handlers
    assert "javascript:" not in html.lower(), url
    assert not re.search(r"\sstyle\s*=", html, flags=re.I), url  # blocked by style-src 'self'
    assert "<style" not in html.lower(), url


async def test_headers_and_csp_on_pages(make_browser, runtime: Runtime) -> None:
    eid = await employer_id(runtime)
    anonymous = await make_browser()
    referent = await logged_in(make_browser, REFERENT)
    mayor = await logged_in(make_browser, "maire@bellerive.example")
    pages = [(anonymous, "/login", 200), (anonymous, "/invitation/faux", 410), (anonymous, "/n-existe-pas", 404),
             (referent, "/services", 200), (referent, f"/employeurs/{eid}", 200),
             (referent, f"/employeurs/{eid}/agents", 200), (referent, f"/employeurs/{eid}/journal", 200),
             (referent, "/employeurs/999999/agents", 403), (mayor, f"/employeurs/{eid}/referents", 200)]
    for browser, url, status in pages:
        response = await browser.get(url)
        assert response.status_code == status, url
        assert response.headers["content-type"].startswith("text/html"), url
        check_headers(response, url)
        check_page_respects_csp(response.text, url)
    # Failed login (401), htmx fragments and redirects carry them too.
    failed = await anonymous.post("/login", {"email": "x@y.fr", "password": "mauvais mot de passe"})
    assert failed.status_code == 401
    check_headers(failed, "POST /login")
    fragment = await referent.get(f"/employeurs/{eid}/agents", headers={"HX-Request": "true"})
    check_headers(fragment, "fragment")
    check_page_respects_csp(fragment.text, "fragment")
    redirect = await anonymous.get("/services")
    assert redirect.status_code == 303
    check_headers(redirect, "redirect")


async def test_no_hsts_over_http_but_hsts_over_https(make_browser, settings: Settings, runtime: Runtime) -> None:
    browser = await make_browser()
    assert "strict-transport-security" not in (await browser.get("/login")).headers
    secure = settings_with(settings, base_url="https://portail.cig-demo.fr")
    async with AsyncTestClient(app=create_app(secure), base_url="https://testserver.local") as client:
        response = await client.get("/login")
        hsts = response.headers["strict-transport-security"]
        max_age = int(re.search(r"max-age=(\d+)", hsts).group(1))  # type: ignore[union-attr]
        assert max_age >= 31536000
        check_headers(response, "https /login")


async def test_static_files_are_cacheable_and_nosniff(make_browser, runtime: Runtime) -> None:
    browser = await make_browser()
    page = await browser.get("/login")
    for src in re.findall(r'<script src="([^"]+)"', page.text) + re.findall(r'href="(/static/[^"]+)"', page.text):
        response = await browser.get(src)
        assert response.status_code == 200, src
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "no-store" not in response.headers.get("cache-control", "")


async def test_healthz_ok(make_browser, runtime: Runtime) -> None:
    browser = await make_browser()
    response = await browser.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_healthz_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    missing = tmp_path / "n-existe-pas" / "encore-moins"
    settings = Settings(secret_key="k" * 48, base_url="http://testserver.local",
                        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{missing}/convergences.db"),
                        mail=MailSettings())
    async with AsyncTestClient(app=create_app(settings), base_url="http://testserver.local") as client:
        response = await client.get("/healthz")
        assert response.status_code == 503
        assert response.json() == {"status": "base de données injoignable"}
        # And a page that needs the database fails closed with the French error page, not a traceback.
        page = await Browser(client).post("/login", {"email": "a@b.fr", "password": "peu importe ici"})
        assert page.status_code == 500 and "Erreur technique" in page.text and "Traceback" not in page.text
    assert not missing.exists()
