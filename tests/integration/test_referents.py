"""Référents: who designates and revokes them, the last active référent, and the journal."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from convergences.accounts.models import Account
from convergences.audit.models import AuditEvent
from convergences.employers.models import Employer, Membership
from convergences.runtime import Runtime
from convergences.security.models import LoginSession
from tests.helpers import BELLERIVE, CIG_ADMIN, REFERENT, SIVOM, employer_id, logged_in, membership, rows, scalar
from tests.mailbox import Mailbox, invitation_path

JULIE = "agent@bellerive.example"
LAST = "dernier référent administrateur"


async def member(rt: Runtime, email: str, siret: str = BELLERIVE) -> Membership:
    found = await membership(rt, email, siret)
    assert found is not None
    return found


async def referent_emails(rt: Runtime, siret: str = BELLERIVE) -> set[str]:
    return set(await rows(rt, select(Account.email).join(Membership, Membership.account_id == Account.id)
                          .join(Employer, Membership.employer_id == Employer.id)
                          .where(Employer.siret == siret, Membership.is_referent.is_(True))))


async def referent_events(rt: Runtime) -> list[AuditEvent]:
    return await rows(rt, select(AuditEvent).where(AuditEvent.action.like("membership:referent:%"))
                      .order_by(AuditEvent.id))


async def audit_count(rt: Runtime) -> int:
    return int(await scalar(rt, select(func.count()).select_from(AuditEvent)))


async def test_authority_designates_and_revokes(make_browser, runtime: Runtime) -> None:
    mayor = await logged_in(make_browser, "maire@bellerive.example")
    julie_browser = await logged_in(make_browser, JULIE)
    eid, julie = await employer_id(runtime), await member(runtime, JULIE)
    page = await mayor.get(f"/employeurs/{eid}/referents")
    assert page.status_code == 200
    assert f'action="/employeurs/{eid}/referents/{julie.id}/designer"' in page.text
    response = await mayor.post(f"/employeurs/{eid}/referents/{julie.id}/designer")
    assert response.status_code == 303 and response.headers["location"] == f"/employeurs/{eid}/referents"
    assert (await member(runtime, JULIE)).is_referent
    designated = (await referent_events(runtime))[-1]
    mayor_id = await scalar(runtime, select(Account.id).where(Account.email == "maire@bellerive.example"))
    assert (designated.action, designated.actor_id, designated.employer_id, designated.target_id, designated.ip) == (
        "membership:referent:designate", mayor_id, eid, julie.id, "testclient")
    # A change of privilege restarts the person's sessions.
    assert await scalar(runtime, select(func.count()).select_from(LoginSession)
                        .where(LoginSession.account_id == julie.account_id)) == 0
    assert (await julie_browser.get("/services")).status_code == 303
    # She now manages Bellerive's agents.
    julie_browser = await logged_in(make_browser, JULIE)
    assert (await julie_browser.get(f"/employeurs/{eid}/agents")).status_code == 200

    response = await mayor.post(f"/employeurs/{eid}/referents/{julie.id}/retirer")
    assert response.status_code == 303
    assert not (await member(runtime, JULIE)).is_referent
    assert (await referent_events(runtime))[-1].action == "membership:referent:revoke"
    julie_browser = await logged_in(make_browser, JULIE)
    assert (await julie_browser.get(f"/employeurs/{eid}/agents")).status_code == 403


async def test_last_active_referent_cannot_be_removed(make_browser, runtime: Runtime) -> None:
    mayor = await logged_in(make_browser, "maire@bellerive.example")
    eid = await employer_id(runtime)
    rh, paie = await member(runtime, "rh@bellerive.example"), await member(runtime, "paie@bellerive.example")
    assert (await mayor.post(f"/employeurs/{eid}/referents/{paie.id}/retirer")).status_code == 303
    assert await referent_emails(runtime) == {"rh@bellerive.example"}
    before = await audit_count(runtime)
    response = await mayor.post(f"/employeurs/{eid}/referents/{rh.id}/retirer", follow_redirects=True)
    assert response.status_code == 200
    assert LAST in response.text and "désignez d'abord un successeur" in response.text.replace("&#39;", "'")
    assert await referent_emails(runtime) == {"rh@bellerive.example"}
    assert await audit_count(runtime) == before


async def test_a_suspended_referent_does_not_count(make_browser, runtime: Runtime) -> None:
    rh_browser = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    rh, paie = await member(runtime, "rh@bellerive.example"), await member(runtime, "paie@bellerive.example")
    assert (await rh_browser.post(f"/employeurs/{eid}/agents/{paie.id}/suspendre")).status_code == 303
    mayor = await logged_in(make_browser, "maire@bellerive.example")
    before = await audit_count(runtime)
    response = await mayor.post(f"/employeurs/{eid}/referents/{rh.id}/retirer", follow_redirects=True)
    assert LAST in response.text
    assert (await member(runtime, "rh@bellerive.example")).is_referent
    assert await audit_count(runtime) == before
    # A suspended member cannot be designated either.
    julie = await member(runtime, JULIE)
    await rh_browser.post(f"/employeurs/{eid}/agents/{julie.id}/suspendre")
    before = await audit_count(runtime)
    response = await mayor.post(f"/employeurs/{eid}/referents/{julie.id}/designer", follow_redirects=True)
    assert "Réactivez d'abord ce compte" in response.text.replace("&#39;", "'")
    assert not (await member(runtime, JULIE)).is_referent
    assert await audit_count(runtime) == before


async def test_authority_designates_a_new_person(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    mayor = await logged_in(make_browser, "maire@bellerive.example")
    eid = await employer_id(runtime)
    email = f"dgs.{uuid.uuid4().hex[:8]}@bellerive.example"
    response = await mayor.post(f"/employeurs/{eid}/referents",
                                {"given_name": "Agnès", "family_name": "Roux", "email": email})
    assert response.status_code == 303
    created = await member(runtime, email)
    assert created.is_referent
    assert invitation_path((await mailbox.wait_for(email))[-1])
    assert {e.target_id for e in await referent_events(runtime)} == {created.id}
    # Invalid: 422, French, nothing written.
    before = await audit_count(runtime)
    accounts = await scalar(runtime, select(func.count()).select_from(Account))
    response = await mayor.post(f"/employeurs/{eid}/referents", {"given_name": "Agnès", "family_name": "",
                                                                "email": "agnes"})
    assert response.status_code == 422
    assert "Le nom est obligatoire." in response.text and "Saisissez une adresse électronique valide" in response.text
    assert await audit_count(runtime) == before
    assert await scalar(runtime, select(func.count()).select_from(Account)) == accounts


async def test_correspondent_and_cig_admin_designate(make_browser, runtime: Runtime) -> None:
    eid = await employer_id(runtime)
    julie, girard = await member(runtime, JULIE), await member(runtime, "l.girard@bellerive.example")
    correspondent = await logged_in(make_browser, "c.bernard@cig-demo.fr")
    assert (await correspondent.get(f"/employeurs/{eid}/referents")).status_code == 200
    assert (await correspondent.post(f"/employeurs/{eid}/referents/{julie.id}/designer")).status_code == 303
    admin = await logged_in(make_browser, CIG_ADMIN)
    assert (await admin.post(f"/employeurs/{eid}/referents/{girard.id}/designer")).status_code == 303
    assert await referent_emails(runtime) == {"rh@bellerive.example", "paie@bellerive.example", JULIE,
                                              "l.girard@bellerive.example"}
    actors = [e.actor_label for e in await referent_events(runtime)]
    assert actors == ["Claire Bernard <c.bernard@cig-demo.fr>", "Hélène Garnier <admin@cig-demo.fr>"]
    # Outside her portfolio, the correspondent may not.
    sivom = await employer_id(runtime, SIVOM)
    president = await member(runtime, "president@coteaux.example", SIVOM)
    assert (await correspondent.get(f"/employeurs/{sivom}/referents")).status_code == 403
    assert (await correspondent.post(f"/employeurs/{sivom}/referents/{president.id}/designer")).status_code == 403
    assert not (await member(runtime, "president@coteaux.example", SIVOM)).is_referent


async def test_agents_and_referents_cannot_designate(make_browser, runtime: Runtime) -> None:
    eid = await employer_id(runtime)
    girard, rh = await member(runtime, "l.girard@bellerive.example"), await member(runtime, "rh@bellerive.example")
    before = await referent_emails(runtime)
    for email in [JULIE, "rh@bellerive.example"]:
        browser = await logged_in(make_browser, email)
        assert (await browser.get(f"/employeurs/{eid}/referents")).status_code == 403, email
        assert (await browser.post(f"/employeurs/{eid}/referents/{girard.id}/designer")).status_code == 403
        assert (await browser.post(f"/employeurs/{eid}/referents/{rh.id}/retirer")).status_code == 403
        assert (await browser.post(f"/employeurs/{eid}/referents", {
            "given_name": "Moi", "family_name": "Même", "email": "moi.meme@exemple.fr"})).status_code == 403
    assert await referent_emails(runtime) == before
    assert not await referent_events(runtime)
    assert await scalar(runtime, select(Account.id).where(Account.email == "moi.meme@exemple.fr")) is None
