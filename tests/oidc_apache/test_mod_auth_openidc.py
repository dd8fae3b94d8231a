"""The portal as the OpenID provider of a real, unmodified relying party: Apache httpd + mod_auth_openidc.

A person (httpx, one cookie jar, redirects followed one by one like a browser) asks Apache for /protected/,
is sent to the portal, logs in with the form, comes back through Apache's redirect URI, and Apache serves
the page with the claims it validated (ID token signed RS256, userinfo) passed on as response headers.
"""

from __future__ import annotations

import base64
import html
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import httpx
import pytest

from convergences.seed import DEMO_PASSWORD
from tests.helpers import totp_code_blocking
from tests.oidc_apache.apache import PROTECTED_MARKER, Apache
from tests.oidc_apache.portal import Portal

pytestmark = pytest.mark.slow

BROWSER_HEADERS = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                   "Accept-Language": "fr-FR,fr;q=0.9", "User-Agent": "convergences-tests/1.0 (httpx)"}
AGENT = "agent@bellerive.example"  # Bellerive, granted BIP
NO_GRANT = "maire@valfleuri.example"  # Val-Fleuri's authority, no BIP grant


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, object]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "get").lower(),
                               "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            fields = self.forms[-1]["fields"]
            assert isinstance(fields, dict)
            if a.get("type") not in ("checkbox", "radio") or "checked" in a:
                fields[a["name"]] = a.get("value", "")


def forms(html: str) -> list[dict[str, object]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


@dataclass
class Person:
    """One browser: a cookie jar shared by the portal and Apache (same host, other port, as in a browser)."""

    portal: Portal
    apache: Apache
    client: httpx.Client = field(init=False)
    trail: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = httpx.Client(headers=BROWSER_HEADERS, follow_redirects=False, timeout=15.0)

    def go(self, url: str, *, method: str = "GET", data: dict[str, str] | None = None,
           hops: int = 20) -> httpx.Response:
        """A navigation: the request, then every redirect as a GET, as a browser does after 302/303."""
        for _ in range(hops):
            try:
                response = self.client.request(method, url, data=data)
            except httpx.RemoteProtocolError:
                # A kept-alive connection closed before any byte of the answer: a browser retries an
                # idempotent request once on a fresh connection. Apache + mod_auth_openidc 2.4.12 sometimes
                # closes the connection after its own error page (no crash in its log). Never for a POST.
                if method != "GET":
                    raise
                self.trail.append(f"{method} {url} -> connection closed, retried")
                response = self.client.request(method, url, data=data)
            self.trail.append(f"{method} {url} -> {response.status_code}")
            if response.status_code in (301, 302, 303, 307, 308) and "location" in response.headers:
                if response.status_code in (307, 308) and method == "POST":
                    raise AssertionError(f"unexpected {response.status_code} after a POST: {self.story()}")
                url, method, data = urljoin(url, response.headers["location"]), "GET", None
                continue
            return response
        raise AssertionError(f"more than {hops} redirects: {self.story()}")

    def login_form(self, response: httpx.Response) -> dict[str, object]:
        assert response.status_code == 200 and urlsplit(str(response.url)).path == "/login", self.story(response)
        found = [f for f in forms(response.text) if "password" in f["fields"]]  # type: ignore[operator]
        assert found, self.story(response)
        return found[0]

    def submit_login(self, response: httpx.Response, email: str, password: str = DEMO_PASSWORD) -> httpx.Response:
        form = self.login_form(response)
        fields = dict(form["fields"])  # type: ignore[call-overload]
        fields.setdefault("_csrf_token", self.client.cookies.get("cvg_csrf", domain="127.0.0.1") or "")
        fields.update({"email": email, "password": password})
        action = urljoin(str(response.url), str(form["action"]) or str(response.url))
        answer = self.go(action, method="POST", data=fields)
        if answer.status_code == 200 and urlsplit(str(answer.url)).path == "/login/second-facteur":
            # A staff account's second factor: the code of its demo TOTP secret.
            second = next(f for f in forms(answer.text) if "code" in f["fields"])  # type: ignore[operator]
            fields = dict(second["fields"])  # type: ignore[call-overload]
            fields["code"] = totp_code_blocking(self.portal.url, email)
            answer = self.go(urljoin(str(answer.url), str(second["action"])), method="POST", data=fields)
        return answer

    def story(self, response: httpx.Response | None = None) -> str:
        lines = ["", "trail:", *self.trail]
        if response is not None:
            text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))[:600]
            lines += [f"last: {response.status_code} {response.url}", f"headers: {dict(response.headers)}",
                      f"body: {text}"]
        lines += ["apache error log (errors/warnings):",
                  self.apache.error_log_tail(40, level="error") or "(none)",
                  self.apache.error_log_tail(20, level="warn") or "(none)",
                  "portal log:", self.portal.log()[-3000:]]
        return "\n".join(lines)

    def sign_in_through_apache(self, email: str) -> httpx.Response:
        first = self.go(self.apache.url + "/protected/")
        return self.submit_login(first, email)


@pytest.fixture
def person(portal: Portal, apache: Apache) -> Iterator[Callable[[], Person]]:
    made: list[Person] = []

    def make() -> Person:
        made.append(Person(portal, apache))
        return made[-1]

    yield make
    for p in made:
        p.client.close()


def jwt_parts(token: str) -> tuple[dict[str, object], dict[str, object]]:
    def part(segment: str) -> dict[str, object]:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))

    header, payload, _signature = token.split(".")
    return part(header), part(payload)


def serves_protected(response: httpx.Response) -> bool:
    return response.status_code == 200 and PROTECTED_MARKER in response.text


def test_discovery_is_what_mod_auth_openidc_needs(portal: Portal, apache: Apache) -> None:
    metadata = httpx.get(portal.url + "/.well-known/openid-configuration", timeout=10).json()
    assert metadata["issuer"] == portal.url
    for key, path in [("authorization_endpoint", "/oidc/authorize"), ("token_endpoint", "/oidc/token"),
                      ("userinfo_endpoint", "/oidc/userinfo"), ("jwks_uri", "/oidc/jwks"),
                      ("end_session_endpoint", "/oidc/logout")]:
        assert metadata[key] == portal.url + path, (key, metadata)
    assert "code" in metadata["response_types_supported"]
    assert "client_secret_basic" in metadata["token_endpoint_auth_methods_supported"]
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]
    assert metadata.get("backchannel_logout_supported") is True


def test_agent_reaches_bip_through_apache_with_the_claims(person, portal: Portal, apache: Apache) -> None:  # type: ignore[no-untyped-def]
    alice = person()
    first = alice.go(apache.url + "/protected/")
    # Apache sent the visitor to the portal's authorize endpoint, which sent her to the login form.
    assert any(step.startswith(f"GET {portal.url}/oidc/authorize?") for step in alice.trail), alice.story(first)
    authorize = next(s.split()[1] for s in alice.trail if s.startswith(f"GET {portal.url}/oidc/authorize?"))
    query = parse_qs(urlsplit(authorize).query)
    assert query["client_id"] == [apache.client.client_id]
    assert query["redirect_uri"] == [apache.redirect_uri]
    assert query["response_type"] == ["code"]
    assert set(query["scope"][0].split()) == {"openid", "email", "profile"}
    alice.login_form(first)

    final = alice.submit_login(first, AGENT)
    assert serves_protected(final), alice.story(final)
    # The code came back to Apache's redirect URI, was exchanged (client_secret_basic), and Apache then
    # redirected to the page first asked for.
    assert any(s.startswith(f"GET {apache.redirect_uri}?") and "code=" in s for s in alice.trail), alice.story(final)
    headers = final.headers
    assert headers["X-Remote-User"] == AGENT, alice.story(final)
    assert headers["X-Claim-Email"] == AGENT
    assert headers["X-Claim-Iss"] == portal.url
    assert headers["X-Claim-Sub"] not in ("", "(null)")
    employer = json.loads(headers["X-Claim-Employer"])
    assert employer == {"siret": "21930999900015", "name": "Commune de Bellerive-sur-Marne"}, employer

    # What Apache validated: an RS256 ID token with the contract's claims...
    id_token = headers.get("X-Id-Token", "")
    assert id_token.count(".") == 2, alice.story(final)
    header, claims = jwt_parts(id_token)
    assert header["alg"] == "RS256" and header.get("kid"), header
    assert claims["iss"] == portal.url and claims["aud"] in (apache.client.client_id, [apache.client.client_id])
    for claim in ("sub", "name", "given_name", "family_name", "email", "auth_time", "amr", "employer", "roles"):
        assert claim in claims, (claim, claims)
    assert (claims["given_name"], claims["family_name"], claims["email"]) == ("Julie", "Moreau", AGENT)
    assert claims["employer"] == employer
    assert isinstance(claims["amr"], list) and claims["amr"], claims
    assert abs(int(claims["auth_time"]) - time.time()) < 120  # type: ignore[call-overload]
    # ... and the userinfo answer for its access token.
    userinfo = json.loads(headers.get("X-Userinfo-Json") or "{}")
    assert userinfo.get("sub") == claims["sub"] and userinfo.get("email") == AGENT, (userinfo, alice.story(final))

    # The Apache session holds: the next request is served without going back to the portal.
    alice.trail.clear()
    again = alice.go(apache.url + "/protected/")
    assert serves_protected(again) and alice.trail == [f"GET {apache.url}/protected/ -> 200"], alice.story(again)


def test_a_person_without_a_bip_grant_never_reaches_the_content(person, portal: Portal, apache: Apache) -> None:  # type: ignore[no-untyped-def]
    paul = person()
    final = paul.sign_in_through_apache(NO_GRANT)
    assert not serves_protected(final), paul.story(final)
    assert "X-Claim-Email" not in final.headers, paul.story(final)
    assert not any(s.startswith(f"GET {apache.redirect_uri}?") and "code=" in s for s in paul.trail), paul.story(final)
    # The portal said no itself, and offers the way back to the application with error=access_denied.
    assert final.status_code == 403 and str(final.url).startswith(portal.url), paul.story(final)
    back = re.findall(r'href="(http://127\.0\.0\.1:\d+/protected/redirect_uri\?[^"]+)"', final.text)
    assert back and "error=access_denied" in back[0], paul.story(final)
    # mod_auth_openidc 2.4.12 (Debian 12) reads the RFC 9207 ``iss`` of this error response as an
    # issuer-initiated login and shows its own error page (status 200, "target_link_uri"): still refused.
    refused = paul.go(html.unescape(back[0]))
    assert not serves_protected(refused) and "X-Claim-Email" not in refused.headers, paul.story(refused)
    # Asking again does not let him in either (no half-made Apache session): the portal refuses again.
    again = paul.go(apache.url + "/protected/")
    assert not serves_protected(again), paul.story(again)
    assert again.status_code == 403 and str(again.url).startswith(portal.url), paul.story(again)


def test_rp_initiated_logout_through_apache_ends_the_portal_session(person, portal: Portal, apache: Apache) -> None:  # type: ignore[no-untyped-def]
    julie = person()
    assert serves_protected(julie.sign_in_through_apache(AGENT)), julie.story()
    julie.trail.clear()
    out = julie.go(f"{apache.redirect_uri}?logout={quote(apache.logged_out_url, safe='')}")
    if out.status_code == 200 and urlsplit(str(out.url)).netloc == urlsplit(portal.url).netloc:
        # A confirmation page at the portal: confirm as the person would.
        confirm = [f for f in forms(out.text) if str(f["method"]) == "post"]
        assert confirm, julie.story(out)
        out = julie.go(urljoin(str(out.url), str(confirm[0]["action"]) or str(out.url)), method="POST",
                       data=dict(confirm[0]["fields"]))  # type: ignore[call-overload]
    assert any(s.startswith(f"GET {portal.url}/oidc/logout?") for s in julie.trail), julie.story(out)
    assert out.status_code == 200 and str(out.url) == apache.logged_out_url, julie.story(out)
    # Both sessions are gone: Apache sends her to the portal, and the portal asks for her password again.
    back = julie.go(apache.url + "/protected/")
    assert not serves_protected(back), julie.story(back)
    julie.login_form(back)


def test_portal_logout_reaches_apache_by_back_channel(person, portal: Portal, apache: Apache) -> None:  # type: ignore[no-untyped-def]
    julie = person()
    assert serves_protected(julie.sign_in_through_apache(AGENT)), julie.story()
    # She logs out at the portal itself (its own form and CSRF token).
    account = julie.go(portal.url + "/services")
    logout = [f for f in forms(account.text) if str(f["action"]).endswith("/logout")]
    assert logout, julie.story(account)
    mark = apache.mark()
    julie.go(portal.url + "/logout", method="POST", data=dict(logout[0]["fields"]))  # type: ignore[call-overload]
    # The portal POSTed a logout_token to Apache's back-channel URI: the Apache session is gone too.
    deadline = time.monotonic() + 10
    while True:
        julie.trail.clear()
        back = julie.go(apache.url + "/protected/")
        if not serves_protected(back) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert not serves_protected(back), julie.story(back) + "\n" + _backchannel_lines(apache)
    julie.login_form(back)
    access, _errors = apache.since(mark)
    assert any("POST /protected/redirect_uri?logout=backchannel HTTP/1.1\" 200" in line for line in access), access


def test_each_logout_token_reaches_apache_once(person, portal: Portal, apache: Apache) -> None:  # type: ignore[no-untyped-def]
    """An RP-initiated logout queues one back-channel logout token per application session: it must be
    POSTed once. mod_auth_openidc remembers every ``jti`` and answers a second delivery of the same token
    with 400 ("possible replay attack"), and the portal then records a failed delivery."""
    julie = person()
    assert serves_protected(julie.sign_in_through_apache(AGENT)), julie.story()
    mark = apache.mark()
    julie.go(f"{apache.redirect_uri}?logout={quote(apache.logged_out_url, safe='')}")
    time.sleep(1.5)  # the portal delivers in the background
    access, errors = apache.since(mark)
    posts = [line for line in access if "POST /protected/redirect_uri?logout=backchannel" in line]
    replays = [line for line in errors if "replay" in line]
    assert len(posts) <= 1 and not replays, "\n".join(["back-channel POSTs:", *posts, "replays:", *replays])


def _backchannel_lines(apache: Apache) -> str:
    log = apache.error_log_path.read_text(errors="replace") if apache.error_log_path.exists() else ""
    return "\n".join(line for line in log.splitlines() if "backchannel" in line.lower())[-4000:]
