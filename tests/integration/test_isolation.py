"""Tenant isolation, proved by walking the router.

Every route of the app (read from ``app.routes``: a new route is walked without touching this file),
filled with ids of an employer B that the actor does not administer, is requested with GET / POST …
(plain and htmx, POSTs with a plausible form and a valid CSRF token) by:

* a référent of A, a référent + autorité of A, an autorité of A, an agent (also against its own
  employer), correspondents whose portfolio excludes B, and an anonymous visitor;
* Nadia Roussel, référent of the SIVOM and plain agent of Val-Fleuri, against Val-Fleuri (one person,
  two employers, two different roles);
* and with employer_id=A but one other id taken from B (membership, application…): the IDOR case.

Each answer must be 403 or 404 (anonymous: a redirect to /login), must not mention B (name, SIRET,
members' emails), and a snapshot of the whole database (every table, every row) taken after the login
must be unchanged after each endpoint's requests. On B's own ids each unsafe request is also sent with
an empty form (the invalid-form re-render path) and each request also as htmx (fragment templates).

A second walk checks roles inside their own employer: an autorité or a correspondent cannot manage
accounts or rights, a référent cannot designate référents, nobody but the CIG admin reaches /admin.

The positive control walks the same GET routes as the right actor (référent or autorité of B for
employer routes, the CIG admin for /admin, any of them plus B's correspondent for the others) and
requires them to be reached: otherwise the refusals above could be refusals for a wrong reason (bad
ids, wrong route). Before the walk, every filled URL is checked to match its route (OPTIONS), so a 404
can never come from a path the router does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from httpx import Response
from litestar import Litestar

from convergences.app import create_app
from convergences.authz import ROLE_PERMISSIONS, Permission
from convergences.runtime import Runtime
from convergences.settings import DatabaseSettings, Settings
from tests.helpers import Browser
from tests.isolation_walk import (
    ALLOW_LIST,
    CSRF_FAILURE,
    SAFE_METHODS,
    SCOPED_LISTINGS,
    Endpoint,
    Target,
    describe,
    diff,
    discover,
    fillings,
    leaks,
    login_redirect,
    plant_history,
    send,
    snapshot,
    target,
)

P = Permission


@dataclass(frozen=True)
class Scenario:
    email: str | None  # None: anonymous
    roles: frozenset[str]  # what the actor is, for SCOPED_LISTINGS
    b: str  # the employer it must not reach
    a: str | None = None  # its own employer (for the IDOR fillings)
    own: bool = False  # its role at A gives it no right at all: walk A's ids too


SCENARIOS = {
    "anonymous": Scenario(None, frozenset(), "sivom"),
    "referent-bellerive-vs-sivom": Scenario("rh@bellerive.example", frozenset({"referent", "agent"}),
                                            "sivom", "bellerive"),
    "referent-authority-ccas-vs-bellerive": Scenario("direction@ccas-bellerive.example",
                                                     frozenset({"referent", "authority", "agent"}),
                                                     "bellerive", "ccas"),
    # The shared person: référent of the SIVOM, plain agent of Val-Fleuri. She must not manage Val-Fleuri.
    "referent-sivom-vs-valfleuri-where-agent": Scenario("secretariat@coteaux.example",
                                                        frozenset({"referent", "agent"}), "valfleuri", "sivom"),
    "authority-bellerive-vs-sivom": Scenario("maire@bellerive.example", frozenset({"authority", "agent"}),
                                             "sivom", "bellerive"),
    "agent-bellerive-vs-sivom-and-own": Scenario("agent@bellerive.example", frozenset({"agent"}),
                                                 "sivom", "bellerive", own=True),
    "correspondent-bernard-vs-sivom": Scenario("c.bernard@cig-demo.fr", frozenset({"correspondent"}),
                                               "sivom", "bellerive"),
    "correspondent-petit-vs-bellerive": Scenario("a.petit@cig-demo.fr", frozenset({"correspondent"}),
                                                 "bellerive", "sivom"),
}


def _offline_app() -> Litestar:
    # Building the app opens no connection (the runtime is built in the lifespan).
    return create_app(Settings(secret_key="inventory-" + "x" * 32,
                               database=DatabaseSettings(url="sqlite+aiosqlite:///:memory:")))


def test_every_route_is_walked_or_allow_listed() -> None:
    """The inventory itself: fails when a route has a parameter (or a kind) the walk cannot fill."""
    app = _offline_app()
    endpoints, problems = discover(app)
    assert not problems, "\n".join(problems)
    walked = {e.path for e in endpoints}
    assert any(p.startswith("/employeurs/") for p in walked), "the walk found no employer route"
    for route in app.routes:
        assert route.path in walked or route.path in ALLOW_LIST, route.path


def test_a_route_with_an_unknown_parameter_fails_the_walk() -> None:
    """The walk's own safety net: a new kind of route is reported, never silently skipped."""
    from litestar import get

    @get("/employeurs/{employer_id:int}/exports/{export_slug:str}", name="export_probe")
    async def probe(employer_id: int, export_slug: str) -> str:
        return export_slug

    endpoints, problems = discover(Litestar(route_handlers=[probe], openapi_config=None))
    assert not endpoints
    assert len(problems) == 1 and "export_slug" in problems[0]


class Walk:
    """Sends the requests, checks each answer and the database after each, collects every failure."""

    def __init__(self, runtime: Runtime, browser: Browser) -> None:
        self.runtime, self.browser = runtime, browser
        self.failures: list[str] = []
        self.routed: set[str] = set()
        self.requests = 0

    async def check_routed(self, endpoint: Endpoint, url: str) -> bool:
        """The filled URL matches a route: Litestar's automatic OPTIONS answers 204, and 404 for a path it
        does not know (a wrong method would answer 405, which the walk rejects anyway)."""
        if url in self.routed:
            return True
        response = await self.browser._send("OPTIONS", url, follow_redirects=False)
        if response.status_code >= 300:
            self.failures.append(f"{endpoint} filled as {url}: the router does not match it "
                                 f"(OPTIONS {response.status_code})")
            return False
        self.routed.add(url)
        return True

    async def refused(self, scenario: Scenario, endpoint: Endpoint, fills: list[tuple[str, dict[str, int]]],
                      b: Target, *, form: dict[str, Any] | None = None) -> None:
        # One whole-database snapshot around each endpoint (all its fillings, plain and htmx): any write
        # is blamed on the endpoint, and the walk stays fast.
        before = await snapshot(self.runtime)
        sent = []
        for label, values in fills:
            url = endpoint.url(values)
            if not await self.check_routed(endpoint, url):
                continue
            for htmx, body, variant in self.variants(endpoint, label, b):
                response = await send(self.browser, endpoint.method, url, body if form is None else form,
                                      htmx=htmx)
                self.requests += 1
                where = f"{endpoint.method} {url} [{label}{variant}] ({endpoint.handler})"
                sent.append(where)
                problem = self.judge(scenario, endpoint, response, b)
                if problem:
                    self.failures.append(f"{where}: {problem}: {describe(response)}")
        after = await snapshot(self.runtime)
        if after != before:
            self.failures.append(f"{endpoint}: the database changed after {sent}: {diff(before, after)}")

    @staticmethod
    def variants(endpoint: Endpoint, label: str, b: Target) -> list[tuple[bool, dict[str, Any], str]]:
        """Plain request with the plausible form. On B's own ids also: htmx (fragments are other
        templates, and some handlers branch on it) and, for unsafe methods, an empty form (the 422
        re-render of an invalid form is a classic path that skips the service's check)."""
        out: list[tuple[bool, dict[str, Any], str]] = [(False, b.form(), "")]
        if label.startswith("ids of "):
            out.append((True, b.form(), ", htmx"))
            if endpoint.method not in SAFE_METHODS:
                out.append((False, {}, ", empty form"))
        return out

    @staticmethod
    def judge(scenario: Scenario, endpoint: Endpoint, response: Response, b: Target) -> str | None:
        leaked = leaks(response, b.markers)
        if leaked:
            return f"the answer mentions {b.key}: {leaked}"
        if scenario.email is None:
            return None if login_redirect(response) else "anonymous not sent to /login"
        if CSRF_FAILURE in response.text:
            return "refused by CSRF, not by the application (the walk's token is wrong)"
        if (endpoint.method in SAFE_METHODS and not endpoint.params
                and scenario.roles & SCOPED_LISTINGS.get(endpoint.path, frozenset())):
            return None  # a listing of the actor's own scope: reachable, checked for leaks above
        if response.status_code not in (403, 404):
            hint = (" (if this page legitimately lists only the actor's own scope, declare it in "
                    "SCOPED_LISTINGS in tests/isolation_walk.py)" if not endpoint.params else "")
            return f"expected 403/404{hint}"
        return None


async def _login(make_browser: Any, email: str | None) -> Browser:
    browser: Browser = await make_browser()
    if email:
        await browser.login(email)
    else:
        await browser.csrf()
    return browser


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_actor_cannot_reach_another_employer(name: str, app: Litestar, runtime: Runtime,
                                                   make_browser: Any) -> None:
    scenario = SCENARIOS[name]
    endpoints, problems = discover(app)
    assert not problems, "\n".join(problems)
    b = await target(runtime, scenario.b, scenario.email, scenario.a)
    a = await target(runtime, scenario.a, scenario.email, scenario.b) if scenario.a else None
    await plant_history(runtime, b)
    browser = await _login(make_browser, scenario.email)  # the snapshots are taken after the login
    walk = Walk(runtime, browser)
    for endpoint in endpoints:
        await walk.refused(scenario, endpoint, fillings(endpoint, b, a, own=scenario.own), b)
    assert not walk.failures, f"{len(walk.failures)} isolation failure(s):\n" + "\n".join(walk.failures)
    assert walk.requests >= 2 * len(endpoints)


# What each employer route requires, to check roles *inside* their own employer: an autorité or a
# correspondent does not manage accounts or rights, a référent does not designate référents. Routes with
# an employer_id under /admin are CIG-only. A new employer route must be declared here (the test says so).
HANDLER_PERMISSION: dict[str, Permission] = {
    "employer": P.EMPLOYER_VIEW, "agents": P.ACCOUNTS_VIEW, "agent": P.ACCOUNTS_VIEW,
    "agent_create": P.ACCOUNTS_MANAGE, "agent_update": P.ACCOUNTS_MANAGE, "agent_suspend": P.ACCOUNTS_MANAGE,
    "agent_reactivate": P.ACCOUNTS_MANAGE, "agent_unthrottle": P.ACCOUNTS_SECURITY,
    "agent_send_reset": P.ACCOUNTS_SECURITY, "agent_end_sessions": P.ACCOUNTS_SECURITY,
    "agent_delete_confirm": P.ACCOUNTS_MANAGE, "agent_delete": P.ACCOUNTS_MANAGE,
    "agent_invite": P.INVITATIONS_RESEND, "grant_toggle": P.GRANTS_MANAGE,
    "referents": P.REFERENTS_DESIGNATE, "referent_create": P.REFERENTS_DESIGNATE,
    "referent_designate": P.REFERENTS_DESIGNATE, "referent_revoke": P.REFERENTS_DESIGNATE,
    "employer_journal": P.JOURNAL_VIEW,
    "employer_journal_csv": P.JOURNAL_VIEW,
    "employer_reviews": P.GRANTS_MANAGE, "review": P.GRANTS_MANAGE, "review_decide": P.GRANTS_MANAGE,
    "review_complete": P.GRANTS_MANAGE, "review_certificate": P.EMPLOYER_VIEW,
    "rgpd_requests": P.ACCOUNTS_MANAGE, "rgpd_request_decide": P.ACCOUNTS_MANAGE,
    "mfa_employer_policy": P.MFA_POLICY, "mfa_employer_policy_post": P.MFA_POLICY, "mfa_reset": P.MFA_RESET,
}

IN_SCOPE = {
    "authority": ("maire@bellerive.example", "bellerive"),
    "correspondent": ("c.bernard@cig-demo.fr", "bellerive"),
    "referent": ("rh@bellerive.example", "bellerive"),
}


async def _walk_own_employer(role: str, app: Litestar, runtime: Runtime, make_browser: Any,
                             empty_form: bool = False) -> None:
    email, key = IN_SCOPE[role]
    endpoints, problems = discover(app)
    assert not problems, "\n".join(problems)
    undeclared = sorted({e.handler for e in endpoints if "employer_id" in e.params
                         and not e.path.startswith("/admin") and e.handler not in HANDLER_PERMISSION})
    assert not undeclared, (f"employer routes {undeclared}: declare the permission they require in "
                            "HANDLER_PERMISSION (tests/integration/test_isolation.py)")
    own = await target(runtime, key, email)
    browser = await _login(make_browser, email)
    walk = Walk(runtime, browser)
    scenario = Scenario(email, frozenset({role}), key)
    beyond = [e for e in endpoints if "employer_id" in e.params
              and (e.path.startswith("/admin") or HANDLER_PERMISSION[e.handler] not in ROLE_PERMISSIONS[role])]
    assert beyond, f"nothing is beyond a {role}'s rights: the table is wrong"
    if empty_form:
        beyond = [e for e in beyond if e.method not in SAFE_METHODS]
    form: dict[str, Any] | None = {} if empty_form else None
    for endpoint in beyond:
        await walk.refused(scenario, endpoint, [(f"own employer {key}", {p: own.ids[p] for p in endpoint.params})],
                           Target(key, own.name, own.siret, own.ids, markers=[]), form=form)
    assert not walk.failures, f"{len(walk.failures)} failure(s):\n" + "\n".join(walk.failures)


@pytest.mark.parametrize("role", list(IN_SCOPE))
async def test_role_outside_its_permissions_on_its_own_employer(role: str, app: Litestar, runtime: Runtime,
                                                                make_browser: Any) -> None:
    await _walk_own_employer(role, app, runtime, make_browser)


@pytest.mark.parametrize("role", ["authority", "correspondent", "referent"])
async def test_invalid_form_is_refused_before_validation(role: str, app: Litestar, runtime: Runtime,
                                                         make_browser: Any) -> None:
    await _walk_own_employer(role, app, runtime, make_browser, empty_form=True)


# The right actors for B = SIVOM: its référent, its autorité (who designates référents), its correspondent,
# and the CIG admin.
PRIVILEGED = {"referent": "secretariat@coteaux.example", "authority": "president@coteaux.example",
              "correspondent": "a.petit@cig-demo.fr", "cig_admin": "admin@cig-demo.fr"}


def _right_actors(endpoint: Endpoint) -> list[str]:
    if endpoint.path.startswith("/admin"):
        return ["cig_admin"]
    if "employer_id" in endpoint.params:
        # The employer's own people first: the référent for agents and rights, the autorité for référents.
        return ["referent", "authority", "correspondent"]
    return list(PRIVILEGED)  # e.g. a correspondent's portfolio page


async def test_positive_control_the_right_actor_reaches_every_get_route(app: Litestar, runtime: Runtime,
                                                                        make_browser: Any) -> None:
    endpoints, problems = discover(app)
    assert not problems, "\n".join(problems)
    b = await target(runtime, "sivom", PRIVILEGED["referent"])
    browsers = {role: await _login(make_browser, email) for role, email in PRIVILEGED.items()}
    failures: list[str] = []
    reached_by: dict[str, str] = {}
    gets = [e for e in endpoints if e.method == "GET"]
    assert gets
    for endpoint in gets:
        url = endpoint.url({p: b.ids[p] for p in endpoint.params})
        answers = {}
        for role in _right_actors(endpoint):
            response = await send(browsers[role], "GET", url)
            answers[role] = describe(response)
            if response.status_code < 300 or (response.status_code < 400 and not login_redirect(response)):
                reached_by[url] = role
                break
        else:
            failures.append(f"GET {url} ({endpoint.handler}) is reached by none of {_right_actors(endpoint)}: "
                            f"{answers}")
    assert not failures, ("the walk does not reach these handlers, so their refusals prove nothing:\n"
                          + "\n".join(failures))
    assert len(reached_by) == len(gets)
