"""Mes données (RGPD art. 15): everything about the person, as a page, JSON and CSV; what each application
receives is what the provider really gives; no secret or hash ever; the download is a journaled POST."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import jinja2
from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from convergences.accounts.models import Account, Invitation
from convergences.audit.models import AuditEvent
from convergences.db import transaction, utcnow
from convergences.oidc.models import Client, OAuthToken
from convergences.oidc.services import ProviderService
from convergences.rgpd import access
from convergences.runtime import TEMPLATES_DIR, Runtime
from convergences.security.models import LoginSession
from tests.helpers import REFERENT, account_id, app_id, employer_id, logged_in, scalar

AGENT = "agent@bellerive.example"


async def download(browser: Any, fmt: str) -> Any:
    return await browser.post("/compte/mes-donnees", {"format": fmt})


async def userinfo_of(rt: Runtime, email: str, slug: str) -> tuple[str, dict[str, Any]]:
    """What the application really gets: a real code → token → userinfo round trip with every scope."""
    uid, eid, application = await account_id(rt, email), await employer_id(rt), await app_id(rt, slug)
    provider = ProviderService(rt)
    async with transaction(rt.maker) as db:
        client = await db.scalar(select(Client).where(Client.application_id == application).order_by(Client.id))
        assert client is not None
        session_id = await db.scalar(select(LoginSession.id).where(LoginSession.account_id == uid).limit(1))
        code = await provider.issue_code(db, client, uid, eid, client.redirect_uris[0], "openid profile email",
                                         None, None, utcnow(), session_id, None)
    tokens = await provider.exchange_code(client, code, client.redirect_uris[0], None)
    return client.name, await provider.userinfo(tokens["access_token"])


async def test_the_person_sees_and_downloads_everything_about_them(make_browser, runtime: Runtime) -> None:
    agent = await logged_in(make_browser, AGENT)
    client_name, received = await userinfo_of(runtime, AGENT, "bip")
    page = await agent.get("/compte/mes-donnees")
    assert page.status_code == 200
    for expected in ("Julie", "Moreau", AGENT, "Commune de Bellerive-sur-Marne", "Ce que reçoit chaque application",
                     "Historique de connexion", "Connexion réussie", 'action="/compte/mes-donnees"'):
        assert expected in page.text, expected
    journaled = await scalar(runtime, select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "account:data:export"))
    assert journaled == 0  # the page is a read

    response = await download(agent, "json")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    assert response.headers["content-disposition"].startswith("attachment; filename=\"mes-donnees-")
    document = json.loads(response.text)
    sections = {s["key"]: s["items"] for s in document["sections"]}
    assert list(sections) == [s.key for s in access.SECTIONS]
    assert sections["identity"][0]["email"] == AGENT
    assert {m["employer"] for m in sections["memberships"]} == {"Commune de Bellerive-sur-Marne"}
    assert "BIP" in {g["application"] for g in sections["grants"]}
    assert sections["sessions"] and sections["logins"][0]["action"] == "Connexion réussie"
    # What each application receives is exactly what the provider gave it.
    bip = next(a for a in sections["applications"] if a["client"] == client_name)
    assert bip["claims"] == received
    assert sections["application_sessions"]
    # Nobody else's data; no secret, no hash.
    assert "l.girard@bellerive.example" not in response.text
    async with transaction(runtime.maker) as db:
        account = await db.scalar(select(Account).options(undefer(Account.password_hash)).where(Account.email == AGENT))
        secrets_ = [account.password_hash, *(await db.scalars(select(LoginSession.id))).all(),
                    *(await db.scalars(select(OAuthToken.token_hash))).all(),
                    *(await db.scalars(select(Invitation.nonce_hash))).all(),
                    *[c for c in (await db.scalars(select(Client.secret_hash))).all() if c]]
    assert secrets_ and not [s for s in secrets_ if s in response.text or s in page.text]
    assert "password_hash" not in response.text and "secret" not in response.text
    entry = await scalar(runtime, select(AuditEvent).where(AuditEvent.action == "account:data:export"))
    assert entry.actor_id == await account_id(runtime, AGENT) and entry.after == {"format": "json"}

    response = await download(agent, "csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.text.startswith("\ufeff")
    lines = list(csv.reader(io.StringIO(response.text[1:]), delimiter=";"))
    assert lines[0] == ["Rubrique", "Élément", "Champ", "Valeur"]
    assert ["Identité", "1", "Adresse électronique", AGENT] in lines


async def test_bad_format_changes_nothing(make_browser, runtime: Runtime) -> None:
    agent = await logged_in(make_browser, AGENT)
    before = await scalar(runtime, select(func.count()).select_from(AuditEvent))
    response = await download(agent, "xls")
    assert response.status_code == 422 and "Format inconnu" in response.text
    assert await scalar(runtime, select(func.count()).select_from(AuditEvent)) == before


async def test_the_download_needs_the_csrf_token(make_browser) -> None:
    agent = await logged_in(make_browser, AGENT)
    response = await agent.post("/compte/mes-donnees", {"format": "json"}, csrf=False)
    assert response.status_code == 403


async def test_a_section_is_one_line_and_the_csv_is_neutralised(make_browser, runtime: Runtime) -> None:
    async def extra(ctx: access.AccessContext) -> list[dict[str, Any]]:
        return [{"given_name": "=HYPERLINK(\"http://x\")", "account": ctx.account.email}]

    access.register_section("extra", "Rubrique ajoutée", extra)
    try:
        agent = await logged_in(make_browser, REFERENT)
        body = (await download(agent, "csv")).text
        row = next(r for r in csv.reader(io.StringIO(body[1:]), delimiter=";") if r[0] == "Rubrique ajoutée")
        assert row[3] == "'=HYPERLINK(\"http://x\")"
        assert "Rubrique ajoutée" in (await agent.get("/compte/mes-donnees")).text
    finally:
        access.SECTIONS[:] = [s for s in access.SECTIONS if s.key != "extra"]


def test_the_account_hub_section_links_to_access_and_erasure() -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True)
    html = env.get_template("rgpd/_compte_section.html").render()
    assert 'href="/compte/mes-donnees"' in html and 'href="/compte/effacement"' in html
    assert "Mes données personnelles" in html
