"""The tenant-isolation walk: every route of the app, discovered from the router, filled with ids of an
employer the actor does not administer, must be refused and must not change the database.

Used by ``tests/integration/test_isolation.py``. Nothing here knows the list of routes: it reads
``app.routes``, so a route added tomorrow is walked tomorrow. A route whose path parameter is not in
:data:`FILLERS` makes the walk fail (someone must say which id of the other employer goes there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from httpx import Response
from litestar import Litestar
from litestar.routes import HTTPRoute
from sqlalchemy import select

import convergences.models  # noqa: F401  (every table in Base.metadata)
from convergences.accounts.models import Account
from convergences.applications.models import Application, Subscription
from convergences.audit import services as audit
from convergences.audit.actions import Action
from convergences.db import Base, transaction
from convergences.employers.models import Employer, Membership, PortfolioEntry
from convergences.employers.siret import with_luhn_key
from convergences.oidc.models import Client
from convergences.runtime import Runtime
from convergences.seed import EMPLOYERS
from tests.helpers import Browser, page_text

# Routes deliberately NOT walked. Exact router paths (not prefixes), so that "/statics" or
# "/admin/services" is never skipped by accident. Each one is public by design or only ever touches
# the visitor's own session; none takes an id of an employer, a membership, an account or an application.
ALLOW_LIST: dict[str, str] = {
    "/": "only redirects to the visitor's own landing page (/login, /admin, /portefeuille, /services)",
    "/login": "the login form and its POST: public by nature (throttled, covered by the auth tests)",
    "/logout": "ends the caller's own session only; walking it would log the actor out mid-walk",
    "/healthz": "load-balancer probe: answers ok / 503, no data, CSRF-exempt",
    "/static/{file_path:path}": "public CSS/JS assets",
    "/schema": "OpenAPI description (JSON): the list of routes, no data",
    "/schema/openapi.json": "OpenAPI description (JSON): the list of routes, no data",
    "/schema/{path:str}": "OpenAPI renderers: same public description, no data",
    "/invitation/{token:str}": "public by design: the signed, single-use, expiring token IS the credential "
                               "(an unknown token answers 410); covered by the invitation tests",
    "/demo/boite-mail": "demo mode only (404 otherwise, as in these tests): the fake mailbox of the demo",
    "/accessibilite": "public accessibility statement (static text)",
    "/confidentialite": "public privacy notice: configuration and the catalogue's claims, no person's data",
    "/services": "the actor's own tiles; takes no id, so it cannot be pointed at another employer",
    # « Mon compte » and the forgotten-password pages: the caller's own account only (no id taken), or a
    # signed single-use link that IS the credential (tests/integration/test_credentials*.py).
    "/compte": "the caller's own identity and links; takes no id",
    "/compte/mot-de-passe": "changes the caller's own password (current password + recent login required)",
    "/compte/adresse": "changes the caller's own email (recent login required, confirmed from the new address)",
    "/compte/adresse/confirmer/{token:str}": "public by design: the signed, single-use, expiring link IS the "
                                             "credential (an unknown token answers 410)",
    "/compte/sessions": "the caller's own sessions; takes no id",
    "/compte/sessions/deconnecter": "ends one of the caller's own sessions (a handle of another account's "
                                    "session matches none of the caller's)",
    "/compte/sessions/autres": "ends the caller's own other sessions",
    "/mot-de-passe/evaluer": "the password meter: evaluates the submitted text only, stores nothing",
    "/mot-de-passe/oublie": "public: the same answer whether or not the address exists; rate-limited",
    "/mot-de-passe/reinitialiser/{token:str}": "public by design: the signed, single-use, 15-minute link IS the "
                                               "credential (an unknown token answers 410)",
    # OpenID Connect protocol endpoints: they take no employer id; what they return is decided by the
    # client's credentials, the tokens presented, and the actor's own rights (tests/oidc).
    "/.well-known/openid-configuration": "public discovery document (no data)",
    "/oidc/jwks": "public signing keys",
    "/oidc/authorize": "issues a code for the actor's own rights only (no right, no code: tests/oidc)",
    "/oidc/employeur": "the actor picks among their own eligible employers (others refused: tests/oidc)",
    "/oidc/token": "client-authenticated; answers only about codes/tokens issued to that client",
    "/oidc/userinfo": "bearer-token protected: the token's own subject only",
    "/oidc/revoke": "client-authenticated; revokes only that client's tokens",
    "/oidc/introspect": "client-authenticated; answers only about that client's tokens",
    "/oidc/logout": "ends the caller's own session only (asks for confirmation without a matching hint)",
    "/oidc/logout/confirmer": "ends the caller's own session only",
    "/compte/mes-donnees": "the caller's own data only (RGPD access); takes no id (test_rgpd_access.py)",
    "/compte/effacement": "the caller's own erasure request only; takes no id (tests/integration/test_erasure.py)",
    # Second factor (convergences.mfa): the caller's own account only, no employer id.
    "/login/second-facteur": "second login step: needs the signed 5-minute state of a right password; no id",
    "/login/enrolement": "forced enrolment at login: the same signed state, the person's own factor; no id",
    "/compte/reauthentification": "re-authenticates the caller's own session",
    "/compte/double-authentification": "the caller's own factors",
    "/compte/double-authentification/application": "adds a factor to the caller's own account",
    "/compte/double-authentification/codes-de-secours": "the caller's own recovery codes",
    "/compte/double-authentification/{factor_id:int}/supprimer":
        "looked up with the caller's own account id (another's factor: 404, tests/integration/test_mfa.py)",
    "/compte/historique": "the caller's own login history",
    "/login/cle-d-acces/options": "passkey challenge (JSON): public, like the login form; no id",
    "/login/cle-d-acces": "passkey login (JSON): the signed assertion of a registered passkey is the credential",
    "/compte/double-authentification/cle-d-acces/options": "passkey registration options for the caller only",
    "/compte/double-authentification/cle-d-acces": "registers a passkey on the caller's own account",
    "/compte/reauthentification/cle-d-acces/options": "passkey challenge for the caller's own re-authentication",
    "/compte/reauthentification/cle-d-acces": "re-authenticates the caller's own session with their own passkey",
}

# Parameterless GET pages that some roles may legitimately open: they list only what is in the
# actor's own scope (e.g. a correspondent's progress page shows their portfolio). For these, a 200 is
# accepted for the listed roles, but the page must still not mention the other employer. Any other
# parameterless route must be refused like the rest. Path -> roles allowed to get a 200.
SCOPED_LISTINGS: dict[str, frozenset[str]] = {
    "/portefeuille": frozenset({"correspondent"}),  # progress of the correspondent's own portfolio
    "/portefeuille/journal": frozenset({"correspondent"}),  # journals of the correspondent's own portfolio
    "/portefeuille/journal.csv": frozenset({"correspondent"}),  # the same, as CSV
    "/revues": frozenset({"correspondent"}),  # access review campaigns touching the own portfolio
}

# Known path parameters, and what the walk puts there. Anything else fails the walk.
FILLERS = ("employer_id", "membership_id", "application_id", "account_id", "correspondent_id", "client_pk",
           "campaign_id", "request_id")

SAFE_METHODS = {"GET", "HEAD"}
CSRF_FAILURE = "Formulaire expiré"

# A plausible body for any form of the app: enough for the handler to reach its service call (person,
# right, employer, application, staff forms). Repeated keys carry the multi-select fields.
FORM: dict[str, Any] = {
    "given_name": "Ingrid", "family_name": "Intruse", "email": "ingrid.intruse@isolation.example",
    "enabled": "1", "role": "saisie",
    "name": "Employeur intrus", "siret": with_luhn_key("2193077770001"), "kind": "commune",
    "slug": "intrusion", "description": "Intrusion", "launch_url": "https://intrusion.example.org/",
    "roles": "consultation:Consultation", "phone": "01 02 03 04 05", "phone_contact": "01 02 03 04 05",
    "authority_given_name": "Ingrid", "authority_family_name": "Intruse",
    "authority_email": "ingrid.autorite@isolation.example",
}

_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


@dataclass(frozen=True)
class Endpoint:
    """One (route, method) of the app."""

    path: str
    method: str
    params: tuple[str, ...]
    handler: str

    def url(self, values: dict[str, int]) -> str:
        return _PARAM.sub(lambda m: str(values[m.group(1)]), self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.handler})"


def _param_names(route: HTTPRoute) -> tuple[str, ...]:
    params = route.path_parameters
    if isinstance(params, dict):
        return tuple(params)
    return tuple(p["name"] if isinstance(p, dict) else p.name for p in params)  # older Litestar


def discover(app: Litestar) -> tuple[list[Endpoint], list[str]]:
    """Every walkable (route, method) and the problems that must fail the walk (unknown parameter,
    unknown kind of route). Allow-listed routes are left out."""
    endpoints: list[Endpoint] = []
    problems: list[str] = []
    for route in app.routes:
        if route.path in ALLOW_LIST:
            continue
        if not isinstance(route, HTTPRoute):
            problems.append(f"{route.path}: {type(route).__name__} is not an HTTP route; extend the walk "
                            "or allow-list it with a reason")
            continue
        params = _param_names(route)
        unknown = [p for p in params if p not in FILLERS]
        if unknown:
            problems.append(f"{route.path}: path parameter(s) {unknown} unknown to the isolation walk; "
                            "add a filler in tests/isolation_walk.py (which id of the other employer?)")
            continue
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods):
                if method == "OPTIONS":  # Litestar's automatic OPTIONS handler: no application code
                    continue
                endpoints.append(Endpoint(route.path, method, params, handler.name or handler.handler_name))
    return sorted(endpoints, key=lambda e: (e.path, e.method)), problems


# -- the data the walk points at ------------------------------------------------------------------

SIRET = {e["key"]: e["siret"] for e in EMPLOYERS}


@dataclass
class Target:
    """One employer seen from one actor: the ids to put in paths, and what must never leak."""

    key: str
    name: str
    siret: str
    ids: dict[str, int]
    markers: list[str] = field(default_factory=list)

    def form(self) -> dict[str, Any]:
        """The plausible form, its multi-selects (subscriptions, portfolio) pointing at this employer's ids."""
        return {**FORM, "applications": [self.ids["application_id"]],
                "correspondents": [self.ids["correspondent_id"]]}


async def target(rt: Runtime, key: str, actor_email: str | None, other_key: str | None = None) -> Target:
    """Ids of employer ``key`` to aim at: a membership that is not the actor's if possible (preferably of a person
    who is not also a member of ``other_key``), an application it subscribes (preferably one that
    ``other_key`` does not), one of its CIG correspondents that is not the actor."""
    async with transaction(rt.maker) as db:
        employer = await db.scalar(select(Employer).where(Employer.siret == SIRET[key]))
        assert employer is not None
        other_id = (await db.scalar(select(Employer.id).where(Employer.siret == SIRET[other_key]))
                    if other_key else None)
        members = (await db.execute(select(Membership.id, Account.id, Account.email, Account.given_name,
                                           Account.family_name).join(Account).where(
            Membership.employer_id == employer.id).order_by(Membership.id))).all()
        other_accounts = set((await db.scalars(select(Membership.account_id).where(
            Membership.employer_id == other_id))).all()) if other_id else set()
        # Someone else's membership if there is one (the CCAS has a single member: the actor).
        candidates = sorted(members, key=lambda m: (m[2] == actor_email, m[1] in other_accounts))
        membership_id, account_id = candidates[0][:2]
        apps = list((await db.scalars(select(Subscription.application_id).where(
            Subscription.employer_id == employer.id).order_by(Subscription.application_id))).all())
        other_apps = set((await db.scalars(select(Subscription.application_id).where(
            Subscription.employer_id == other_id))).all()) if other_id else set()
        apps.sort(key=lambda a: a in other_apps)
        if other_id and apps[0] in other_apps:
            # No application of this employer is foreign to the other one: aim at one the other
            # employer does not subscribe at all.
            everything = (await db.scalars(select(Application.id).order_by(Application.id))).all()
            apps = [a for a in everything if a not in other_apps] or apps
        correspondents = list((await db.execute(select(Account.id, Account.email).join(
            PortfolioEntry, PortfolioEntry.correspondent_id == Account.id).where(
            PortfolioEntry.employer_id == employer.id).order_by(Account.id))).all())
        if not correspondents or all(c[1] == actor_email for c in correspondents):
            correspondents = list((await db.execute(select(Account.id, Account.email).where(
                Account.is_correspondent.is_(True)).order_by(Account.id))).all())
        correspondent_id = next(c[0] for c in correspondents if c[1] != actor_email)
        # What must never appear in an answer to the actor: B's name and SIRET, its members' names and
        # emails (except the actor's own: Nadia is a member of Val-Fleuri and her name is in the header).
        others = [m for m in members if m[2] != actor_email]
        markers = [employer.name, employer.siret, *sorted(f"{m[3]} {m[4]}" for m in others),
                   *sorted(m[2] for m in others)]
        client_pk = await client_of(db, apps[0])
        campaign_id = await campaign_of(db, key, employer.id)
        request_id = await erasure_request_of(db, employer.id, account_id)
        return Target(key, employer.name, employer.siret,
                      {"employer_id": employer.id, "membership_id": membership_id, "application_id": apps[0],
                       "account_id": account_id, "correspondent_id": correspondent_id, "client_pk": client_pk,
                       "campaign_id": campaign_id, "request_id": request_id},
                      markers)


async def campaign_of(db: Any, key: str, employer_id: int) -> int:
    """campaign_id: an access review campaign covering this employer only, already completed there (so
    that its certificate page exists for the positive control)."""
    from datetime import timedelta

    from convergences.db import utcnow
    from convergences.reviews.models import ReviewCampaign, ReviewScope

    name = f"Revue isolation {key}"
    found = await db.scalar(select(ReviewCampaign.id).where(ReviewCampaign.name == name))
    if found is not None:
        return int(found)
    campaign = ReviewCampaign(name=name, deadline=utcnow() + timedelta(days=30))
    db.add(campaign)
    await db.flush()
    db.add(ReviewScope(campaign_id=campaign.id, employer_id=employer_id, completed_at=utcnow(),
                       completed_by_label="Isolation"))
    return int(campaign.id)


async def client_of(db: Any, application_id: int) -> int:
    """client_pk: an OpenID Connect client of the target application (routes nest it under its
    application). The demo seed registers clients for some applications only: the others get a public
    one here, before the logins and the first snapshot."""
    client_pk = await db.scalar(select(Client.id).where(Client.application_id == application_id)
                                .order_by(Client.id).limit(1))
    if client_pk is None:
        client = Client(client_id=f"isolation-{application_id}", application_id=application_id,
                        name="Isolation", redirect_uris=["https://isolation.example.org/cb"], is_public=True)
        db.add(client)
        await db.flush()
        client_pk = client.id
    return int(client_pk)


async def erasure_request_of(db: Any, employer_id: int, account_id: int) -> int:
    """request_id: a pending erasure request of the target member, addressed to the target employer."""
    from convergences.rgpd.models import ErasureRequest

    request_id = await db.scalar(select(ErasureRequest.id).where(ErasureRequest.employer_id == employer_id,
                                                                 ErasureRequest.decided_at.is_(None)).limit(1))
    if request_id is None:
        request = ErasureRequest(account_id=account_id, employer_id=employer_id, message="Isolation")
        db.add(request)
        await db.flush()
        request_id = request.id
    return int(request_id)


async def plant_history(rt: Runtime, b: Target) -> None:
    """Give B a journal entry that names B and one of its members, so that a journal or listing page
    leaking B's history (portfolio journal, another employer's journal…) shows a marker."""
    async with transaction(rt.maker) as db:
        audit.record(db, None, Action.ACCOUNT_UPDATE, employer_id=b.ids["employer_id"], target_type="membership",
                     target_id=b.ids["membership_id"], target_label=f"{b.markers[-1]} ({b.name})",
                     after={"employer": b.name, "siret": b.siret})


def fillings(endpoint: Endpoint, b: Target, a: Target | None, *, own: bool = False
             ) -> list[tuple[str, dict[str, int]]]:
    """The ways to fill this endpoint's path: everything from B; and, when the actor has an employer A,
    employer_id=A with exactly one other id taken from B (IDOR across employers); with ``own``, also
    everything from A (the actor's own employer, where its role gives it no such right)."""
    out = [(f"ids of {b.key}", {p: b.ids[p] for p in endpoint.params})]
    if a is not None and "employer_id" in endpoint.params:
        for param in endpoint.params:
            if param == "employer_id":
                continue
            values = {p: a.ids[p] for p in endpoint.params}
            values[param] = b.ids[param]
            out.append((f"employer {a.key} with {param} of {b.key}", values))
    if own and a is not None and endpoint.params:
        out.append((f"ids of own employer {a.key}", {p: a.ids[p] for p in endpoint.params}))
    return out


# -- requests ---------------------------------------------------------------------------------------

async def send(browser: Browser, method: str, url: str, form: dict[str, Any] | None = None, *,
               htmx: bool = False) -> Response:
    """A request as the page would send it: unsafe methods carry the plausible form and a valid CSRF
    token (so a 403 can only come from the application, never from the CSRF middleware)."""
    headers = {"HX-Request": "true"} if htmx else {}
    if method in SAFE_METHODS:
        return await browser._send(method, url, headers=headers, follow_redirects=False)
    token = await browser.csrf()
    headers["x-csrftoken"] = token
    body = {**(FORM if form is None else form), "_csrf_token": token}
    return await browser._send(method, url, data=body, headers=headers, follow_redirects=False)


def login_redirect(response: Response) -> bool:
    """Anonymous visitors are sent to the login form (303, or HX-Redirect for htmx), with no content."""
    if response.status_code in (302, 303, 307):
        return response.headers.get("location", "").startswith("/login")
    if response.status_code == 200 and "hx-redirect" in response.headers:
        # litestar-htmx's ClientRedirect sends a JSON ``null`` body.
        return response.headers["hx-redirect"].startswith("/login") and response.content in (b"", b"null")
    return False


def leaks(response: Response, markers: list[str]) -> list[str]:
    body = response.text
    return [m for m in markers if m in body]


def describe(response: Response) -> str:
    extra = response.headers.get("location") or response.headers.get("hx-redirect") or ""
    return f"{response.status_code} {extra} {page_text(response)[:200]!r}"


# -- the database, whole --------------------------------------------------------------------------

# Columns that legitimately change on any request: the login session's last_seen_at is refreshed (at
# most once a minute) by every authenticated request, whoever the actor and whatever the route. That is
# the only exclusion: the snapshot is taken after the logins, so login audit events and login_throttle
# rows (written by POST /login, which is allow-listed and not walked) cannot appear during the walk and
# stay compared; login_session rows themselves stay compared too (a suspension ends sessions).
VOLATILE_COLUMNS = {("login_session", "last_seen_at")}


def _read_all(connection: Any) -> dict[str, list[tuple[Any, ...]]]:
    result: dict[str, list[tuple[Any, ...]]] = {}
    for table in Base.metadata.sorted_tables:
        columns = [c for c in table.columns if (table.name, c.name) not in VOLATILE_COLUMNS]
        order = list(table.primary_key.columns) or columns
        result[table.name] = [tuple(row) for row in connection.execute(select(*columns).order_by(*order))]
    return result


async def snapshot(rt: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the metadata, ordered by primary key, in one read transaction."""
    async with rt.engine.connect() as connection:
        return await connection.run_sync(_read_all)


def diff(before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]) -> str:
    """Which rows appeared or vanished, table by table (rows may hold JSON: compared by repr)."""
    lines = []
    for name in before:
        old, new = {repr(r) for r in before[name]}, {repr(r) for r in after.get(name, [])}
        if old != new:
            lines.append(f"{name}: -{sorted(old - new)[:2]} +{sorted(new - old)[:2]}")
    return "; ".join(lines)
