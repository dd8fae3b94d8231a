"""Agents: create (with the invitation really mailed), edit, suspend/reactivate, delete with confirmation,
attach an existing account, invalid input, the grid (search, sort, filter, pages, htmx fragment), tenant
isolation, and the journal entry every change writes in its own transaction."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import func, select, text

from convergences.accounts.models import Account, Invitation
from convergences.applications.models import Grant
from convergences.audit.models import AuditEvent
from convergences.db import transaction, utcnow
from convergences.employers.models import Membership
from convergences.mail.models import OutboxMail
from convergences.runtime import Runtime
from convergences.security.models import LoginSession
from tests.helpers import (
    BELLERIVE,
    CIG_ADMIN,
    REFERENT,
    SIVOM,
    VALFLEURI,
    employer_id,
    logged_in,
    membership,
    rows,
    scalar,
)
from tests.mailbox import Mailbox, invitation_path, text_body

NADIA = "secretariat@coteaux.example"


async def account_id(rt: Runtime, email: str) -> int | None:
    return await scalar(rt, select(Account.id).where(Account.email == email))


async def membership_id(rt: Runtime, email: str, siret: str = BELLERIVE) -> int:
    found = await membership(rt, email, siret)
    assert found is not None, (email, siret)
    return found.id


async def counts(rt: Runtime) -> dict[str, int]:
    result = {}
    for model in (Account, Membership, AuditEvent, OutboxMail, Invitation, Grant, LoginSession):
        result[model.__tablename__] = int(await scalar(rt, select(func.count()).select_from(model)))
    return result


async def events(rt: Runtime, action: str) -> list[AuditEvent]:
    return await rows(rt, select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))


def grid_names(html: str) -> list[str]:
    return re.findall(r'<tr id="agent-\d+"[^>]*>\s*<th scope="row"><a [^>]*>([^<]+)</a>', html)


# -- create ------------------------------------------------------------------------------------------

async def test_create_agent_sends_the_invitation(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    email = f"nora.{uuid.uuid4().hex[:8]}@bellerive.example"
    response = await referent.post(f"/employeurs/{eid}/agents",
                                   {"given_name": "Nora", "family_name": "Lefèvre", "email": email.upper()})
    assert response.status_code == 303 and response.headers["location"] == f"/employeurs/{eid}/agents"
    page = await referent.get(f"/employeurs/{eid}/agents")
    assert "Le compte de Nora Lefèvre est créé" in page.text and "Lefèvre Nora" in grid_names(page.text)
    account = await scalar(runtime, select(Account).where(Account.email == email))
    assert account is not None and account.activated_at is None
    assert await scalar(runtime, select(Account.password_hash).where(Account.id == account.id)) is None
    m = await membership(runtime, email)
    assert m is not None and not m.is_referent and m.suspended_at is None
    mails = await mailbox.wait_for(email)
    assert len(mails) == 1
    body = text_body(mails[0])
    assert "Sophie Martin vous a ouvert un compte Convergences pour Commune de Bellerive-sur-Marne" in body
    assert invitation_path(mails[0]).startswith("/invitation/")
    referent_id = await account_id(runtime, "rh@bellerive.example")
    created = (await events(runtime, "account:create"))[-1]
    assert (created.actor_id, created.employer_id, created.target_type, created.target_id, created.ip) == (
        referent_id, eid, "account", account.id, "testclient")
    assert created.after == {"given_name": "Nora", "family_name": "Lefèvre", "email": email}
    assert created.actor_label == "Sophie Martin <rh@bellerive.example>"
    sent = (await events(runtime, "account:invitation:send"))[-1]
    assert sent.actor_id == referent_id and sent.employer_id == eid and sent.target_id == account.id


async def test_invalid_input_is_422_in_french_and_writes_nothing(make_browser, runtime: Runtime) -> None:
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    before = await counts(runtime)
    response = await referent.post(f"/employeurs/{eid}/agents",
                                   {"given_name": "", "family_name": "<b>Nom</b>", "email": "pas-une-adresse"})
    assert response.status_code == 422
    assert "Le prénom est obligatoire." in response.text
    assert "Le nom contient des caractères non autorisés." in response.text
    assert "Saisissez une adresse électronique valide" in response.text
    assert "<html" in response.text  # a plain post gets the whole page back
    assert 'value="&lt;b&gt;Nom&lt;/b&gt;"' in response.text  # re-shown, escaped
    htmx = await referent.post(f"/employeurs/{eid}/agents", {"given_name": "Ana", "family_name": "Lopez",
                                                             "email": ""}, htmx=True)
    assert htmx.status_code == 422
    assert "<html" not in htmx.text and 'id="agent-form"' in htmx.text
    assert "L'adresse électronique est obligatoire." in htmx.text.replace("&#39;", "'")
    assert await counts(runtime) == before


async def test_existing_member_is_refused_without_journal(make_browser, runtime: Runtime) -> None:
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    before = await counts(runtime)
    response = await referent.post(f"/employeurs/{eid}/agents", {"given_name": "Julie", "family_name": "Moreau",
                                                                 "email": "Agent@Bellerive.example"})
    assert response.status_code == 422
    assert "Cette personne a déjà un compte rattaché à votre employeur." in response.text
    assert await counts(runtime) == before


async def test_htmx_create_redirects_the_client(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    email = f"ana.{uuid.uuid4().hex[:8]}@bellerive.example"
    response = await referent.post(f"/employeurs/{eid}/agents",
                                   {"given_name": "Ana", "family_name": "Lopez", "email": email}, htmx=True)
    assert 200 <= response.status_code < 300
    assert response.headers["hx-redirect"] == f"/employeurs/{eid}/agents"
    assert await account_id(runtime, email) is not None
    await mailbox.wait_for(email)


# -- attach an existing account -------------------------------------------------------------------------

async def test_attach_existing_account_without_leaking_other_employers(make_browser, runtime: Runtime,
                                                                        mailbox: Mailbox) -> None:
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    nadia_id = await account_id(runtime, NADIA)
    mails_before = len(mailbox.to(NADIA))
    response = await referent.post(f"/employeurs/{eid}/agents",
                                   {"given_name": "Nadia", "family_name": "Roussel", "email": NADIA})
    assert response.status_code == 303
    assert await scalar(runtime, select(func.count()).select_from(Account).where(Account.email == NADIA)) == 1
    memberships = await rows(runtime, select(Membership).where(Membership.account_id == nadia_id))
    assert len(memberships) == 3
    attached = (await events(runtime, "membership:attach"))[-1]
    mid = await membership_id(runtime, NADIA)
    assert attached.employer_id == eid and attached.target_id == mid
    assert not await events(runtime, "account:create")
    # Already active: no invitation; she sets nothing new.
    assert len(mailbox.to(NADIA)) == mails_before
    flash = await referent.get(f"/employeurs/{eid}/agents")
    assert "avait déjà un compte Convergences" in flash.text
    # The Bellerive référent sees her, never her other employers.
    secrets = ["SIVOM", "Coteaux", "Val-Fleuri", SIVOM, VALFLEURI, "snapi", "SNAPI"]
    for url in [f"/employeurs/{eid}", f"/employeurs/{eid}/agents", f"/employeurs/{eid}/agents?q=nadia",
                f"/employeurs/{eid}/agents/{mid}", f"/employeurs/{eid}/agents/{mid}/supprimer",
                f"/employeurs/{eid}/journal", "/services"]:
        page = await referent.get(url)
        assert page.status_code == 200, url
        shown = page.text.replace(NADIA, "")  # her own address is legitimately shown
        for secret in secrets:
            assert secret not in shown, (url, secret)
    # The grid shows her in Bellerive with no Bellerive right yet.
    assert "Roussel Nadia" in (await referent.get(f"/employeurs/{eid}/agents?q=roussel")).text


async def test_email_of_a_shared_or_active_account_cannot_be_changed(make_browser, runtime: Runtime) -> None:
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    mid = await membership_id(runtime, "agent@bellerive.example")
    before = await counts(runtime)
    response = await referent.post(f"/employeurs/{eid}/agents/{mid}", {
        "given_name": "Julie", "family_name": "Moreau", "email": "pirate@exemple.fr"})
    assert response.status_code == 422
    assert "ne peut être modifiée que par son titulaire" in response.text
    assert await account_id(runtime, "agent@bellerive.example") is not None
    assert await counts(runtime) == before


# -- edit ----------------------------------------------------------------------------------------------

async def test_edit_agent_names_and_invited_email(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    mid = await membership_id(runtime, "l.girard@bellerive.example")
    page = await referent.get(f"/employeurs/{eid}/agents/{mid}")
    assert page.status_code == 200 and 'value="l.girard@bellerive.example"' in page.text
    new_email = f"lucas.{uuid.uuid4().hex[:8]}@bellerive.example"
    response = await referent.post(f"/employeurs/{eid}/agents/{mid}",
                                   {"given_name": "Luc", "family_name": "Girardin", "email": new_email})
    assert response.status_code == 303
    account = await scalar(runtime, select(Account).join(Membership).where(Membership.id == mid))
    assert (account.given_name, account.family_name, account.email) == ("Luc", "Girardin", new_email)
    update = (await events(runtime, "account:update"))[-1]
    assert update.employer_id == eid and update.target_id == mid and update.ip == "testclient"
    assert update.before["given_name"] == "Lucas" and update.before["email"] == "l.girard@bellerive.example"
    assert update.after["given_name"] == "Luc" and update.after["email"] == new_email
    # The new address receives a fresh invitation.
    await mailbox.wait_for(new_email)
    # Invalid edit: 422, French, unchanged.
    before = await counts(runtime)
    bad = await referent.post(f"/employeurs/{eid}/agents/{mid}",
                              {"given_name": "", "family_name": "Girardin", "email": new_email})
    assert bad.status_code == 422 and "Le prénom est obligatoire." in bad.text
    assert await counts(runtime) == before
    assert await scalar(runtime, select(Account.given_name).where(Account.email == new_email)) == "Luc"


# -- suspend / reactivate --------------------------------------------------------------------------------

async def test_suspend_and_reactivate(make_browser, runtime: Runtime) -> None:
    referent = await logged_in(make_browser, REFERENT)
    agent = await logged_in(make_browser, "agent@bellerive.example")
    assert "BIP" in (await agent.get("/services")).text
    eid = await employer_id(runtime)
    mid = await membership_id(runtime, "agent@bellerive.example")
    response = await referent.post(f"/employeurs/{eid}/agents/{mid}/suspendre", follow_redirects=True)
    assert "Le compte est suspendu" in response.text and "Suspendu" in response.text
    assert (await membership(runtime, "agent@bellerive.example")).suspended_at is not None  # type: ignore[union-attr]
    suspended = (await events(runtime, "membership:suspend"))[-1]
    assert suspended.employer_id == eid and suspended.target_id == mid
    assert suspended.actor_id == await account_id(runtime, "rh@bellerive.example")
    # Her only membership is suspended: logging in again opens nothing.
    refused = await agent.post("/login", {"email": "agent@bellerive.example",
                                          "password": "Convergences demo 2026 !"})
    assert refused.status_code != 303
    assert await scalar(runtime, select(func.count()).select_from(LoginSession).where(
        LoginSession.account_id == await account_id(runtime, "agent@bellerive.example"))) == 0
    filtered = await referent.get(f"/employeurs/{eid}/agents?statut=suspended")
    assert grid_names(filtered.text) == ["Moreau Julie"]
    response = await referent.post(f"/employeurs/{eid}/agents/{mid}/reactiver")
    assert response.status_code == 303
    assert (await membership(runtime, "agent@bellerive.example")).suspended_at is None  # type: ignore[union-attr]
    assert len(await events(runtime, "membership:reactivate")) == 1
    await agent.login("agent@bellerive.example")
    assert 'data-app="bip"' in (await agent.get("/services")).text
    # Grants survived the suspension.
    assert await scalar(runtime, select(func.count()).select_from(Grant).where(Grant.membership_id == mid)) == 3


async def test_refused_changes_write_no_journal(make_browser, runtime: Runtime) -> None:
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    own = await membership_id(runtime, "rh@bellerive.example")
    before = await counts(runtime)
    response = await referent.post(f"/employeurs/{eid}/agents/{own}/suspendre", follow_redirects=True)
    assert "Vous ne pouvez pas suspendre votre propre compte." in response.text.replace("&#39;", "'")
    response = await referent.post(f"/employeurs/{eid}/agents/{own}/supprimer", follow_redirects=True)
    assert "Vous ne pouvez pas supprimer votre propre compte." in response.text.replace("&#39;", "'")
    # Suspending the other référent would leave one: fine. Suspending both is refused at the last.
    other = await membership_id(runtime, "paie@bellerive.example")
    assert (await referent.post(f"/employeurs/{eid}/agents/{other}/suspendre")).status_code == 303
    after_one = await counts(runtime)
    assert after_one["audit_event"] == before["audit_event"] + 1
    admin = await logged_in(make_browser, CIG_ADMIN)
    after_login = await counts(runtime)
    response = await admin.post(f"/employeurs/{eid}/agents/{own}/suspendre", follow_redirects=True)
    assert "dernier référent administrateur" in response.text
    response = await admin.post(f"/employeurs/{eid}/agents/{own}/supprimer", follow_redirects=True)
    assert "dernier référent administrateur" in response.text
    assert await counts(runtime) == after_login
    assert (await membership(runtime, "rh@bellerive.example")).suspended_at is None  # type: ignore[union-attr]


# -- delete ----------------------------------------------------------------------------------------------

async def test_delete_needs_confirmation_and_erases_a_lone_account(make_browser, runtime: Runtime) -> None:
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    mid = await membership_id(runtime, "agent@bellerive.example")
    uid = await account_id(runtime, "agent@bellerive.example")
    confirm = await referent.get(f"/employeurs/{eid}/agents/{mid}/supprimer")
    assert confirm.status_code == 200
    assert "Supprimer le compte de Julie Moreau ?" in confirm.text
    assert f'action="/employeurs/{eid}/agents/{mid}/supprimer"' in confirm.text and "Oui, supprimer" in confirm.text
    assert await account_id(runtime, "agent@bellerive.example") == uid  # GET deleted nothing
    response = await referent.post(f"/employeurs/{eid}/agents/{mid}/supprimer")
    assert response.status_code == 303 and response.headers["location"] == f"/employeurs/{eid}/agents"
    assert await account_id(runtime, "agent@bellerive.example") is None
    assert await scalar(runtime, select(func.count()).select_from(Membership).where(Membership.id == mid)) == 0
    assert await scalar(runtime, select(func.count()).select_from(Grant).where(Grant.membership_id == mid)) == 0
    removed = (await events(runtime, "membership:delete"))[-1]
    assert removed.employer_id == eid and removed.target_id == mid
    erased = (await events(runtime, "account:delete"))[-1]
    # Erased (RGPD art. 17): the journal names a pseudonym, never the person (tests/integration/test_erasure.py).
    assert erased.target_id == uid and erased.target_label.startswith("Personne effacée n°")
    assert removed.before["email"] == erased.target_label
    # History survives the deletion: the journal page still lists the events, under the pseudonym.
    journal = await referent.get(f"/employeurs/{eid}/journal")
    assert erased.target_label in journal.text and "Julie Moreau" not in journal.text
    # Deleting again: the membership no longer exists for this employer.
    assert (await referent.post(f"/employeurs/{eid}/agents/{mid}/supprimer")).status_code == 404


async def test_delete_keeps_an_account_serving_another_employer(make_browser, runtime: Runtime) -> None:
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    await referent.post(f"/employeurs/{eid}/agents", {"given_name": "Nadia", "family_name": "Roussel",
                                                      "email": NADIA})
    mid = await membership_id(runtime, NADIA)
    response = await referent.post(f"/employeurs/{eid}/agents/{mid}/supprimer")
    assert response.status_code == 303
    assert await membership(runtime, NADIA) is None
    assert await membership(runtime, NADIA, SIVOM) is not None
    assert await membership(runtime, NADIA, VALFLEURI) is not None
    assert not await events(runtime, "account:delete")
    nadia = await logged_in(make_browser, NADIA)
    assert "SIVOM des Coteaux" in (await nadia.get("/services")).text


# -- grid ------------------------------------------------------------------------------------------------

async def add_agents(rt: Runtime, n: int) -> None:
    eid = await employer_id(rt)
    async with transaction(rt.maker) as db:
        for i in range(n):
            account = Account(email=f"agent{i:02d}@grille.example", given_name=f"Prénom{i:02d}",
                              family_name=f"Zénon{i:02d}", activated_at=utcnow() if i % 2 else None)
            db.add(account)
            await db.flush()
            db.add(Membership(account_id=account.id, employer_id=eid,
                              suspended_at=utcnow() if i % 10 == 3 else None))


async def test_grid_search_sort_filter(make_browser, runtime: Runtime) -> None:
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    base = f"/employeurs/{eid}/agents"
    everyone = grid_names((await referent.get(base)).text)
    assert everyone == ["Faure Emma", "Girard Lucas", "Haddad Karim", "Lemoine Jacques", "Martin Sophie",
                        "Moreau Julie"]
    assert grid_names((await referent.get(base + "?tri=nom&ordre=desc")).text) == everyone[::-1]
    by_email = grid_names((await referent.get(base + "?tri=email")).text)
    assert by_email == ["Moreau Julie", "Faure Emma", "Girard Lucas", "Lemoine Jacques", "Haddad Karim",
                        "Martin Sophie"]
    assert grid_names((await referent.get(base + "?q=MOR")).text) == ["Moreau Julie"]
    assert grid_names((await referent.get(base + "?q=karim")).text) == ["Haddad Karim"]
    assert grid_names((await referent.get(base + "?q=paie%40")).text) == ["Haddad Karim"]
    assert grid_names((await referent.get(base + "?q=%25")).text) == []  # a literal %, not a wildcard
    assert grid_names((await referent.get(base + "?q=_")).text) == []
    assert grid_names((await referent.get(base + "?statut=invited")).text) == ["Faure Emma", "Girard Lucas"]
    assert len(grid_names((await referent.get(base + "?statut=active")).text)) == 4
    assert grid_names((await referent.get(base + "?statut=suspended")).text) == []
    # Unknown sort or status values fall back to the defaults instead of failing.
    assert grid_names((await referent.get(base + "?tri=password&ordre=x&statut=tous")).text) == everyone
    # Another employer's people never show up in the search.
    assert grid_names((await referent.get(base + "?q=roussel")).text) == []


async def test_grid_pagination_and_htmx_fragment(make_browser, runtime: Runtime) -> None:
    await add_agents(runtime, 30)
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    base = f"/employeurs/{eid}/agents"
    first = await referent.get(base)
    assert "36 agents" in first.text and "Page 1 sur 2" in first.text
    names = grid_names(first.text)
    assert len(names) == 25
    second = await referent.get(base + "?page=2")
    rest = grid_names(second.text)
    assert len(rest) == 11 and not set(rest) & set(names)
    assert rest[-1] == "Zénon29 Prénom29"
    assert grid_names((await referent.get(base + "?page=99")).text) == rest  # clamped to the last page
    assert len(grid_names((await referent.get(base + "?page=abc")).text)) == 25
    # htmx asks for the table only.
    fragment = await referent.get(base + "?q=z%C3%A9non&statut=suspended", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and "<body" not in fragment.text
    assert fragment.text.lstrip().startswith('<div id="agents-table"')
    assert grid_names(fragment.text) == ["Zénon03 Prénom03", "Zénon13 Prénom13", "Zénon23 Prénom23"]
    assert "<html" in (await referent.get(base + "?q=z%C3%A9non")).text
    invited = grid_names((await referent.get(base + "?statut=invited&q=z%C3%A9non")).text)
    assert invited == [f"Zénon{i:02d} Prénom{i:02d}" for i in range(0, 30, 2) if i % 10 != 3]


# -- tenant isolation ------------------------------------------------------------------------------------

async def test_no_reach_into_another_employer(make_browser, runtime: Runtime) -> None:
    referent = await logged_in(make_browser, REFERENT)
    bellerive, sivom = await employer_id(runtime), await employer_id(runtime, SIVOM)
    nadia_at_sivom = await membership_id(runtime, NADIA, SIVOM)
    before = await counts(runtime)
    for url in [f"/employeurs/{sivom}", f"/employeurs/{sivom}/agents", f"/employeurs/{sivom}/journal",
                f"/employeurs/{sivom}/agents/{nadia_at_sivom}"]:
        assert (await referent.get(url)).status_code == 403, url
    # The other employer's membership through one's own employer id: not found.
    for url in [f"/employeurs/{bellerive}/agents/{nadia_at_sivom}",
                f"/employeurs/{bellerive}/agents/{nadia_at_sivom}/supprimer"]:
        assert (await referent.get(url)).status_code == 404, url
    for action in ["suspendre", "supprimer", "invitation", "debloquer"]:
        assert (await referent.post(f"/employeurs/{bellerive}/agents/{nadia_at_sivom}/{action}")
                ).status_code == 404, action
        assert (await referent.post(f"/employeurs/{sivom}/agents/{nadia_at_sivom}/{action}")
                ).status_code == 403, action
    assert (await referent.post(f"/employeurs/{bellerive}/agents/{nadia_at_sivom}", {
        "given_name": "X", "family_name": "Y", "email": NADIA})).status_code == 404
    assert (await referent.post(f"/employeurs/{sivom}/agents", {
        "given_name": "X", "family_name": "Y", "email": "x@y.fr"})).status_code == 403
    assert await counts(runtime) == before
    # An agent manages nothing, even at their own employer.
    agent = await logged_in(make_browser, "agent@bellerive.example")
    assert (await agent.get(f"/employeurs/{bellerive}/agents")).status_code == 403
    own = await membership_id(runtime, "l.girard@bellerive.example")
    assert (await agent.post(f"/employeurs/{bellerive}/agents/{own}/suspendre")).status_code == 403
    assert (await agent.get(f"/employeurs/{bellerive}/agents/{own}/supprimer")).status_code == 403
    after = await counts(runtime)
    assert {k: v for k, v in after.items() if k not in ("login_session", "audit_event")} == {
        k: v for k, v in before.items() if k not in ("login_session", "audit_event")}


# -- the journal entry is part of the change's transaction --------------------------------------------------

async def test_change_and_journal_commit_together(make_browser, runtime: Runtime, db_url: str) -> None:
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    mid = await membership_id(runtime, "agent@bellerive.example")
    async with runtime.engine.begin() as connection:
        if db_url.startswith("sqlite"):
            await connection.execute(text("CREATE TRIGGER journal_down BEFORE INSERT ON audit_event "
                                          "BEGIN SELECT RAISE(ABORT, 'journal indisponible'); END"))
        else:
            await connection.execute(text("CREATE FUNCTION journal_down() RETURNS trigger AS $$ BEGIN "
                                          "RAISE EXCEPTION 'journal indisponible'; END $$ LANGUAGE plpgsql"))
            await connection.execute(text("CREATE TRIGGER journal_down BEFORE INSERT ON audit_event "
                                          "FOR EACH ROW EXECUTE FUNCTION journal_down()"))
    before = await counts(runtime)
    response = await referent.post(f"/employeurs/{eid}/agents/{mid}/suspendre")
    assert response.status_code == 500 and "rien n'a été enregistré" in response.text.replace("&#39;", "'")
    response = await referent.post(f"/employeurs/{eid}/agents", {"given_name": "Sans", "family_name": "Journal",
                                                                 "email": "sans.journal@bellerive.example"})
    assert response.status_code == 500
    assert (await membership(runtime, "agent@bellerive.example")).suspended_at is None  # type: ignore[union-attr]
    assert await account_id(runtime, "sans.journal@bellerive.example") is None
    assert await counts(runtime) == before


async def test_a_shared_account_cannot_be_renamed_by_one_of_its_employers(make_browser, runtime) -> None:
    from sqlalchemy import select

    from convergences.accounts.models import Account
    from convergences.db import transaction
    from convergences.employers.models import Employer, Membership

    async with transaction(runtime.maker) as db:
        nadia = await db.scalar(select(Account).where(Account.email == "secretariat@coteaux.example"))
        sivom = await db.scalar(select(Employer.id).where(Employer.siret == "25930999900011"))
        mid = await db.scalar(select(Membership.id).where(Membership.account_id == nadia.id,
                                                          Membership.employer_id == sivom))
    # Nadia serves SIVOM and Val-Fleuri: acting for SIVOM, even the CIG admin's screen refuses.
    admin = await logged_in(make_browser, CIG_ADMIN)
    response = await admin.post(f"/employeurs/{sivom}/agents/{mid}",
                                {"given_name": "Nadine", "family_name": "Roussel",
                                 "email": "secretariat@coteaux.example"})
    assert response.status_code == 422
    assert "partagé" in response.text
    async with transaction(runtime.maker) as db:
        assert (await db.get(Account, nadia.id)).given_name == "Nadia"
