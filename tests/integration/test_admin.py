"""CIG admin screens: employers (SIRET check, authority invitation), subscriptions and portfolios,
catalogue, correspondents, dashboard numbers, global journal; and who may not see them."""

from __future__ import annotations

import html
import re

from sqlalchemy import func, select

from convergences.accounts.models import Account
from convergences.applications.models import Application, Subscription
from convergences.audit.models import AuditEvent
from convergences.db import transaction
from convergences.employers.models import Employer, Membership, PortfolioEntry
from convergences.employers.siret import with_luhn_key
from convergences.runtime import Runtime
from tests.helpers import BELLERIVE, CIG_ADMIN, VALFLEURI, account_id, employer_id, logged_in, page_text
from tests.mailbox import Mailbox, invitation_path


async def app_ids(rt: Runtime) -> dict[str, int]:
    async with transaction(rt.maker) as db:
        return {slug: id_ for slug, id_ in (await db.execute(select(Application.slug, Application.id))).all()}


async def actions(rt: Runtime, **where: object) -> list[str]:
    query = select(AuditEvent.action).order_by(AuditEvent.id)
    for key, value in where.items():
        query = query.where(getattr(AuditEvent, key) == value)
    async with transaction(rt.maker) as db:
        return list((await db.scalars(query)).all())


def progress_row(html: str, eid: int) -> dict[str, str]:
    match = re.search(rf'<tr data-employer="{eid}">(.*?)</tr>', html, re.S)
    assert match, f"no progress row for employer {eid}"
    row = match.group(1)
    cells = dict(re.findall(r'data-col="(\w+)">([^<]*)<', row))
    cells["text"] = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row))
    return cells


async def test_bad_siret_is_refused_in_french_and_creates_nothing(make_browser, runtime: Runtime) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    async with transaction(runtime.maker) as db:
        before = await db.scalar(select(func.count()).select_from(Employer))
    response = await admin.post("/admin/employeurs", {
        "name": "Commune de Mauvais-Siret", "siret": "219309999 00016", "kind": "commune",
        "given_name": "Anne", "family_name": "Durand", "email": "anne.durand@mauvais.example"})
    assert response.status_code == 422
    assert "clé de contrôle incorrecte" in response.text
    assert 'aria-invalid="true"' in response.text and 'value="Commune de Mauvais-Siret"' in response.text
    short = await admin.post("/admin/employeurs", {
        "name": "Commune courte", "siret": "1234", "kind": "commune",
        "given_name": "Anne", "family_name": "Durand", "email": "anne.durand@mauvais.example"})
    assert short.status_code == 422 and "exactement 14 chiffres" in short.text
    async with transaction(runtime.maker) as db:
        assert await db.scalar(select(func.count()).select_from(Employer)) == before
        assert await db.scalar(select(Account.id).where(Account.email == "anne.durand@mauvais.example")) is None
    assert "employer:create" not in await actions(runtime)


async def test_create_employer_invites_authority_by_mail(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    apps = await app_ids(runtime)
    siret = with_luhn_key("2193077770001")
    email = f"maire.{id(admin)}@hautbois.example"
    response = await admin.post("/admin/employeurs", {
        "name": "Commune de Hautbois", "siret": siret[:3] + " " + siret[3:], "kind": "commune",
        "given_name": "Anne", "family_name": "Durand", "email": email.upper(),
        "applications": [str(apps["site"]), str(apps["bip"])]})
    assert response.status_code == 303, page_text(response)
    eid = await employer_id(runtime, siret)
    assert response.headers["location"] == f"/admin/employeurs/{eid}"
    page = await admin.get(response.headers["location"])
    assert page.status_code == 200 and "Commune de Hautbois" in page.text
    assert "invitation a été envoyée à Anne Durand" in page.text
    assert f'href="/employeurs/{eid}/referents"' in page.text
    async with transaction(runtime.maker) as db:
        employer = await db.get(Employer, eid)
        assert employer is not None and employer.kind == "commune"
        subscribed = set((await db.scalars(select(Subscription.application_id).where(
            Subscription.employer_id == eid))).all())
        assert subscribed == {apps["site"], apps["bip"]}
        membership = await db.scalar(select(Membership).join(Account).where(Account.email == email))
        assert membership is not None and membership.employer_id == eid and membership.is_authority
    mails = await mailbox.wait_for(email)
    assert invitation_path(mails[-1]).startswith("/invitation/")
    logged = await actions(runtime, employer_id=eid)
    assert logged.count("subscription:add") == 2
    assert {"employer:create", "account:create", "membership:authority:designate",
            "account:invitation:send"} <= set(logged)

    # The same SIRET twice: a French message on the field, nothing created.
    again = await admin.post("/admin/employeurs", {
        "name": "Doublon", "siret": siret, "kind": "commune",
        "given_name": "Luc", "family_name": "Morel", "email": "luc.morel@doublon.example"})
    assert again.status_code == 422 and "Un employeur porte déjà ce SIRET." in again.text
    listing = await admin.get("/admin/employeurs?q=hautbois")
    assert "Commune de Hautbois" in listing.text and ">Commune de Bellerive-sur-Marne</a>" not in listing.text

    # The invited authority can accept and then designate référents.
    authority = await make_browser()
    path = invitation_path(mails[-1])
    password = "orage tulipe cartable 77"
    assert (await authority.post(path, {"password": password, "confirmation": password})).status_code == 303
    await authority.login(email, password)
    assert (await authority.get(f"/employeurs/{eid}/referents")).status_code == 200


async def test_edit_subscriptions_and_portfolio_writes_journal(make_browser, runtime: Runtime) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    apps = await app_ids(runtime)
    eid = await employer_id(runtime, VALFLEURI)
    bernard, petit = (await account_id(runtime, "c.bernard@cig-demo.fr"),
                      await account_id(runtime, "a.petit@cig-demo.fr"))
    page = await admin.get(f"/admin/employeurs/{eid}")
    assert page.status_code == 200
    assert f'id="f-app-{apps["bip"]}" name="applications" value="{apps["bip"]}" checked' in page.text
    assert f'id="f-staff-{petit}" name="correspondents" value="{petit}" checked' in page.text

    bad = await admin.post(f"/admin/employeurs/{eid}", {
        "name": "Commune de Val-Fleuri", "siret": "21930888800012", "kind": "commune",
        "applications": [str(apps["site"])], "correspondents": [str(bernard)]})
    assert bad.status_code == 422 and "clé de contrôle" in bad.text
    assert "subscription:remove" not in await actions(runtime, employer_id=eid)

    response = await admin.post(f"/admin/employeurs/{eid}", {
        "name": "Commune de Val-Fleuri-sur-Seine", "siret": VALFLEURI, "kind": "commune",
        "applications": [str(apps["site"]), str(apps["net-cotisations"])], "correspondents": [str(bernard)]})
    assert response.status_code == 303
    logged = await actions(runtime, employer_id=eid)
    assert {"employer:update", "subscription:add", "subscription:remove", "portfolio:add",
            "portfolio:remove"} <= set(logged)
    async with transaction(runtime.maker) as db:
        assert set((await db.scalars(select(Subscription.application_id).where(
            Subscription.employer_id == eid))).all()) == {apps["site"], apps["net-cotisations"]}
        assert set((await db.scalars(select(PortfolioEntry.correspondent_id).where(
            PortfolioEntry.employer_id == eid))).all()) == {bernard}
        update = await db.scalar(select(AuditEvent).where(AuditEvent.action == "employer:update",
                                                          AuditEvent.employer_id == eid))
        assert update is not None and update.before["name"] == "Commune de Val-Fleuri"

    # The portfolio follows: Claire Bernard now sees Val-Fleuri, Antoine Petit no longer does.
    claire = await logged_in(make_browser, "c.bernard@cig-demo.fr")
    assert "Val-Fleuri-sur-Seine" in (await claire.get("/portefeuille")).text
    assert (await claire.get(f"/employeurs/{eid}/agents")).status_code == 200
    antoine = await logged_in(make_browser, "a.petit@cig-demo.fr")
    assert "Val-Fleuri" not in (await antoine.get("/portefeuille")).text
    assert (await antoine.get(f"/employeurs/{eid}/agents")).status_code == 403

    journal = await admin.get("/admin/journal")
    assert journal.status_code == 200
    assert "Employeur retiré du portefeuille" in journal.text and "Abonnement retiré" in journal.text


async def test_add_authority_sends_invitation(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    eid = await employer_id(runtime, BELLERIVE)
    email = f"nouveau.maire.{id(admin)}@bellerive.example"
    invalid = await admin.post(f"/admin/employeurs/{eid}/autorites",
                               {"given_name": "", "family_name": "Roy", "email": "pas-une-adresse"})
    assert invalid.status_code == 422
    assert "Le prénom est obligatoire." in invalid.text and "adresse électronique valide" in invalid.text
    response = await admin.post(f"/admin/employeurs/{eid}/autorites",
                                {"given_name": "Hugo", "family_name": "Roy", "email": email})
    assert response.status_code == 303
    await mailbox.wait_for(email)
    page = await admin.get(f"/admin/employeurs/{eid}")
    assert "Hugo Roy" in page.text and "Jacques Lemoine" in page.text
    twice = await admin.post(f"/admin/employeurs/{eid}/autorites",
                             {"given_name": "Hugo", "family_name": "Roy", "email": email})
    assert twice.status_code == 422 and "déjà autorité territoriale" in twice.text


async def test_application_create_and_edit_with_roles(make_browser, runtime: Runtime) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    invalid = await admin.post("/admin/applications", {
        "slug": "Mauvais Slug", "name": "", "launch_url": "ftp://x", "roles": "a b:Rôle"})
    assert invalid.status_code == 422
    shown = html.unescape(invalid.text)
    for message in ["minuscules, chiffres et tirets", "Le nom de l'application est obligatoire.",
                    "commençant par https://", "sous la forme code:Libellé"]:
        assert message in shown, message
    taken = await admin.post("/admin/applications", {"slug": "bip", "name": "Autre BIP",
                                                     "launch_url": "https://autre.example/"})
    assert taken.status_code == 422 and "déjà utilisé" in taken.text

    response = await admin.post("/admin/applications", {
        "slug": "paie-en-ligne", "name": "Paie en ligne", "description": "Bulletins dématérialisés.",
        "launch_url": "https://paie.cig-demo.example/", "roles": "lecture:Lecture\n\nGestion:Gestion de la paie"})
    assert response.status_code == 303
    async with transaction(runtime.maker) as db:
        app = await db.scalar(select(Application).where(Application.slug == "paie-en-ligne"))
        assert app is not None
        assert app.roles == [{"code": "lecture", "label": "Lecture"},
                             {"code": "gestion", "label": "Gestion de la paie"}]
    listing = await admin.get("/admin/applications")
    assert "Paie en ligne" in listing.text and "Gestion de la paie" in listing.text

    page = await admin.get(f"/admin/applications/{app.id}")
    assert page.status_code == 200 and "lecture:Lecture\ngestion:Gestion de la paie" in page.text
    edited = await admin.post(f"/admin/applications/{app.id}", {
        "slug": "paie-en-ligne", "name": "Paie en ligne", "description": "",
        "launch_url": "https://paie.cig-demo.example/v2", "roles": "lecture:Consultation"})
    assert edited.status_code == 303
    async with transaction(runtime.maker) as db:
        app = await db.get(Application, app.id)
        assert app is not None and app.roles == [{"code": "lecture", "label": "Consultation"}]
        assert app.launch_url.endswith("/v2")
    assert {"application:create", "application:update"} <= set(await actions(runtime, target_id=app.id))

    # A role still granted to agents cannot be removed.
    net = (await app_ids(runtime))["net-cotisations"]
    refused = await admin.post(f"/admin/applications/{net}", {
        "slug": "net-cotisations", "name": "Net Cotisations", "launch_url": "https://net.example/",
        "roles": "consultation:Consultation"})
    assert refused.status_code == 422 and "retirez-leur d'abord" in html.unescape(refused.text)
    assert (await admin.get("/admin/applications/999999")).status_code == 404


async def test_create_correspondent(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    bad = await admin.post("/admin/correspondants", {"given_name": "Léa", "family_name": "Simon",
                                                      "email": "lea.simon@cig-demo.fr", "phone": "appelez-moi"})
    assert bad.status_code == 422 and "numéro de téléphone valide" in bad.text
    email = f"lea.simon.{id(admin)}@cig-demo.fr"
    response = await admin.post("/admin/correspondants", {"given_name": "Léa", "family_name": "Simon",
                                                           "email": email, "phone": "01 56 96 80 83"})
    assert response.status_code == 303
    await mailbox.wait_for(email)
    page = await admin.get("/admin/correspondants")
    assert "Simon Léa" in page.text and "01 56 96 80 83" in page.text
    assert "Commune de Bellerive-sur-Marne" in page.text  # Claire Bernard's portfolio
    async with transaction(runtime.maker) as db:
        account = await db.scalar(select(Account).where(Account.email == email))
        assert account is not None and account.is_correspondent and account.phone_contact == "01 56 96 80 83"
    assert "staff:create" in await actions(runtime, target_id=account.id)
    again = await admin.post("/admin/correspondants", {"given_name": "Léa", "family_name": "Simon",
                                                        "email": email})
    assert again.status_code == 422 and "déjà correspondant CIG" in again.text


async def test_dashboard_progress_numbers_and_search(make_browser, runtime: Runtime) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    bellerive, ccas = await employer_id(runtime, BELLERIVE), await employer_id(runtime, "26930999900010")
    page = await admin.get("/admin")
    assert page.status_code == 200 and 'aria-current="page">Administration CIG' in page.text
    row = progress_row(page.text, bellerive)
    # 2 référents; 2 invited agents; maire, 2 référents and 1 agent activated; 3 apps granted of 3 subscribed.
    assert (row["invited"], row["activated"], row["applications"]) == ("2", "4", "3 / 3")
    assert "Oui (2)" in row["text"] and "Claire Bernard" in row["text"]
    row = progress_row(page.text, ccas)
    assert (row["invited"], row["activated"], row["applications"]) == ("0", "2", "3 / 4")
    assert "Totaux par correspondant CIG" in page.text and "Antoine Petit" in page.text

    found = await admin.get("/admin?q=coteaux")
    assert "SIVOM des Coteaux" in found.text and f'data-employer="{bellerive}"' not in found.text
    fragment = await admin.get("/admin?q=val", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text and "Commune de Val-Fleuri" in fragment.text


async def test_non_admins_get_403_on_admin_pages(make_browser, runtime: Runtime) -> None:
    eid = await employer_id(runtime, BELLERIVE)
    pages = ["/admin", "/admin/employeurs", f"/admin/employeurs/{eid}", "/admin/applications",
             "/admin/applications/1", "/admin/correspondants", "/admin/journal"]
    for email in ["rh@bellerive.example", "agent@bellerive.example", "c.bernard@cig-demo.fr"]:
        visitor = await logged_in(make_browser, email)
        for url in pages:
            response = await visitor.get(url)
            assert response.status_code == 403, (email, url, response.status_code)
            assert "Accès refusé" in response.text
        response = await visitor.post("/admin/employeurs", {
            "name": "Intrus", "siret": with_luhn_key("2193066660001"), "kind": "commune",
            "given_name": "Ivan", "family_name": "Intrus", "email": "ivan@intrus.example"})
        assert response.status_code == 403
        response = await visitor.post(f"/admin/employeurs/{eid}", {
            "name": "Piratée", "siret": BELLERIVE, "kind": "commune"})
        assert response.status_code == 403
    async with transaction(runtime.maker) as db:
        assert await db.scalar(select(Employer.id).where(Employer.name.in_(["Intrus", "Piratée"]))) is None
    anonymous = await make_browser()
    response = await anonymous.get("/admin/employeurs")
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")


async def test_accessibility_statement_is_public(make_browser) -> None:
    visitor = await make_browser()
    response = await visitor.get("/accessibilite")
    assert response.status_code == 200
    assert "partiellement conforme" in response.text and "RGAA" in response.text
    assert "Défenseur des droits" in response.text and "<script>" not in response.text
