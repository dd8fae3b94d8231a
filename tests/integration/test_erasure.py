"""Erasure (RGPD art. 17): self-service request decided by a référent, erasure when the last membership
goes, by a CIG administrator, and with the employer. After erasure, no personal value of the person is
left in ANY text/JSON column of ANY table (scanned from Base.metadata), and ``audit verify`` stays green,
after erasure and after a retention purge."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import JSON, String, Text, func, select

import convergences.models  # noqa: F401  (every table in Base.metadata)
from convergences.accounts.models import Account
from convergences.accounts.services import AuthService
from convergences.audit import services as audit
from convergences.audit.models import AuditEvent, AuditPersonKey
from convergences.audit.retention import purge_journal
from convergences.db import Base, transaction, utcnow
from convergences.employers.models import Employer, Membership
from convergences.mail.models import OutboxMail
from convergences.mfa.models import RecoveryCode, SecondFactor
from convergences.oidc.models import AuthorizationCode, Client, LogoutDelivery, OAuthToken, RpSession
from convergences.oidc.services import ProviderService
from convergences.rgpd.models import ErasureRequest
from convergences.runtime import Runtime
from convergences.security.models import LoginSession, LoginThrottle
from tests.helpers import (
    BELLERIVE,
    CIG_ADMIN,
    REFERENT,
    SIVOM,
    account_id,
    app_id,
    employer_id,
    logged_in,
    membership_id,
    page_text,
    rows,
    scalar,
)
from tests.mailbox import Mailbox, invitation_path

GIVEN, FAMILY, EMAIL = "Zéphyrine", "Quillebeuf", "zephyrine.quillebeuf@bellerive.example"
IP = "203.0.113.57"
PASSWORD = "Un mot de passe très long 2026 !"  # noqa: S105 - test data


async def scan(rt: Runtime, values: list[str]) -> list[str]:
    """Every text/JSON cell of every table of the metadata that still holds one of ``values``."""
    found = []
    needles = [v.lower() for v in values]
    async with rt.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text | JSON)]
            if not columns:
                continue
            for row in (await connection.execute(select(*columns))).all():
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    text = (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)).lower()
                    found += [f"{table.name}.{column.name}: {v}" for v in needles if v in text]
    return found


async def verify(rt: Runtime) -> audit.ChainReport:
    async with transaction(rt.maker) as db:
        return await audit.verify(db)


async def a_person_with_a_history(make_browser: Any, rt: Runtime, mailbox: Mailbox) -> dict[str, Any]:
    """Zéphyrine: invited and activated, a right to BIP, logins (one failed) from a known IP, an application
    session with a code and tokens, her own journal entries (export, request), mail about her in the outbox."""
    eid = await employer_id(rt)
    # The mailbox lives for the whole session: count what was already there.
    sent_to_her, sent_to_referent = len(mailbox.to(EMAIL)), len(mailbox.to(REFERENT))
    referent = await logged_in(make_browser, REFERENT)
    response = await referent.post(f"/employeurs/{eid}/agents", {"given_name": GIVEN, "family_name": FAMILY,
                                                                  "email": EMAIL})
    assert response.status_code == 303
    path = invitation_path((await mailbox.wait_for(EMAIL, sent_to_her + 1))[-1])
    person = await make_browser()
    response = await person.post(path, {"password": PASSWORD, "confirmation": PASSWORD})
    assert response.status_code == 303, page_text(response)
    mid = await membership_id(rt, EMAIL)
    bip = await app_id(rt, "bip")
    assert (await referent.post(f"/employeurs/{eid}/agents/{mid}/droits/{bip}", {"enabled": "1"})).status_code == 303
    auth = AuthService(rt)
    assert not (await auth.login(EMAIL, "pas le bon", IP, "Navigateur de Zéphyrine")).ok
    login = await auth.login(EMAIL, PASSWORD, IP, "Navigateur de Zéphyrine")
    assert login.ok
    uid = await account_id(rt, EMAIL)
    # An application session: a code redeemed for tokens, and a second code left unused.
    provider = ProviderService(rt)
    async with transaction(rt.maker) as db:
        client = await db.scalar(select(Client).where(Client.application_id == bip, Client.allow_refresh.is_(False))
                                 .order_by(Client.id).limit(1))
        assert client is not None and client.backchannel_logout_uri
        session_id = await db.scalar(select(LoginSession.id).where(LoginSession.account_id == uid))
        codes = [await provider.issue_code(db, client, uid, eid, client.redirect_uris[0], "openid profile email",
                                           "nonce", None, utcnow(), session_id, None) for _ in range(2)]
    tokens = await provider.exchange_code(client, codes[0], client.redirect_uris[0], None)
    assert tokens["access_token"]
    assert (await provider.userinfo(tokens["access_token"]))["email"] == EMAIL
    await person.login(EMAIL, PASSWORD)
    assert (await person.post("/compte/mes-donnees", {"format": "json"})).status_code == 200
    response = await person.post("/compte/effacement", {"message": f"Merci d'effacer {GIVEN} {FAMILY}."})
    assert response.status_code == 303, page_text(response)
    await mailbox.wait_for(REFERENT, sent_to_referent + 1)
    # Then second factors she named herself (the registration flows are tested in test_mfa.py).
    async with transaction(rt.maker) as db:
        db.add_all([SecondFactor(account_id=uid, kind="webauthn", label=f"Clé de {GIVEN} {FAMILY}",
                                 credential_id="cred-zephyrine", public_key="pk"),
                    RecoveryCode(account_id=uid, code_hash="0" * 64)])
    return {"eid": eid, "uid": uid, "mid": mid, "bip": bip, "referent": referent, "person": person,
            "client_pk": client.id}


async def test_confirmed_request_erases_everything_and_keeps_the_chain(make_browser, runtime: Runtime,
                                                                       mailbox: Mailbox) -> None:
    state = await a_person_with_a_history(make_browser, runtime, mailbox)
    uid, eid = state["uid"], state["eid"]
    values = [GIVEN, FAMILY, EMAIL, IP]
    assert await scan(runtime, values)  # the scan does see her before
    key_id = await scalar(runtime, select(AuditPersonKey.id).where(AuditPersonKey.account_id == uid))
    mentioned = await scalar(runtime, select(func.count()).select_from(AuditEvent).where(
        (AuditEvent.actor_key_id == key_id) | (AuditEvent.subject_key_id == key_id)))
    assert mentioned >= 8
    deliveries = await scalar(runtime, select(func.count()).select_from(LogoutDelivery))

    request_id = await scalar(runtime, select(ErasureRequest.id).where(ErasureRequest.account_id == uid))
    page = await state["referent"].get(f"/employeurs/{eid}/effacements")
    assert page.status_code == 200 and f"{GIVEN} {FAMILY}" in page.text
    response = await state["referent"].post(f"/employeurs/{eid}/effacements/{request_id}",
                                            {"decision": "confirmer"})
    assert response.status_code == 303

    assert await scan(runtime, values) == []
    assert await scalar(runtime, select(Account.id).where(Account.id == uid)) is None
    for model in (LoginSession, AuthorizationCode, OAuthToken, RpSession, ErasureRequest, SecondFactor,
                  RecoveryCode):
        assert await scalar(runtime, select(func.count()).select_from(model).where(model.account_id == uid)) == 0
    assert await scalar(runtime, select(func.count()).select_from(LoginThrottle)) == 0
    # The application was told (back-channel logout queued), the person's mail is gone, the référents'
    # notification stays (redacted).
    assert await scalar(runtime, select(func.count()).select_from(LogoutDelivery)) == deliveries + 1
    assert await scalar(runtime, select(func.count()).select_from(OutboxMail).where(
        OutboxMail.recipient == REFERENT)) >= 1
    # The journal: same entries, the pseudonym instead of the person; rights history still provable.
    key = await scalar(runtime, select(AuditPersonKey).where(AuditPersonKey.id == key_id))
    assert key.secret is None and key.account_id is None and key.pseudonym.startswith("Personne effacée n°")
    entries = await rows(runtime, select(AuditEvent).where(
        (AuditEvent.actor_key_id == key_id) | (AuditEvent.subject_key_id == key_id)))
    assert len(entries) >= mentioned + 3
    grant = next(e for e in entries if e.action == "grant:add")
    assert grant.target_label == key.pseudonym and grant.application_id == state["bip"]
    assert grant.after == {"application": "bip", "role": grant.after["role"]}
    erased = next(e for e in entries if e.action == "account:delete")
    assert erased.target_label == key.pseudonym and erased.employer_id == eid
    assert {e.actor_label for e in entries if e.actor_key_id == key_id} == {key.pseudonym}
    report = await verify(runtime)
    assert report.intact, report.problem
    # The journal page shows the pseudonym.
    journal = await state["referent"].get(f"/employeurs/{eid}/journal")
    assert key.pseudonym in journal.text and FAMILY not in journal.text

    # A retention purge afterwards keeps the chain verifiable too.
    async with transaction(runtime.maker) as db:
        assert await purge_journal(db, utcnow() + timedelta(days=400), runtime.settings) > 0
    assert (await verify(runtime)).intact
    assert await scan(runtime, values) == []


async def test_a_pseudonymised_entry_changed_afterwards_is_found(make_browser, runtime: Runtime) -> None:
    from sqlalchemy import text

    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    mid = await membership_id(runtime, "agent@bellerive.example")
    assert (await referent.post(f"/employeurs/{eid}/agents/{mid}/supprimer")).status_code == 303
    entry = await scalar(runtime, select(AuditEvent).where(AuditEvent.action == "account:delete"))
    assert entry.target_label.startswith("Personne effacée n°")
    assert (await verify(runtime)).intact
    async with transaction(runtime.maker) as db:
        await db.execute(text("UPDATE audit_event SET target_label = 'Julie Moreau' WHERE id = :id"),
                         {"id": entry.id})
    report = await verify(runtime)
    assert report.broken_id == entry.id and "pseudonymisée" in report.problem


async def test_refusal_needs_a_reason_and_tells_the_person(make_browser, runtime: Runtime, mailbox: Mailbox) -> None:
    eid = await employer_id(runtime)
    sent = len(mailbox.to("agent@bellerive.example"))
    person = await logged_in(make_browser, "agent@bellerive.example")
    assert (await person.post("/compte/effacement", {"message": ""})).status_code == 303
    again = await person.post("/compte/effacement", {"message": ""})
    assert again.status_code == 422 and "déjà en cours" in again.text
    request_id = await scalar(runtime, select(ErasureRequest.id))
    referent = await logged_in(make_browser, REFERENT)
    response = await referent.post(f"/employeurs/{eid}/effacements/{request_id}", {"decision": "refuser"})
    assert response.status_code == 422 and "Indiquez la raison du refus" in response.text
    assert 'aria-describedby="f-reason-' in response.text
    assert await scalar(runtime, select(ErasureRequest.decided_at)) is None
    response = await referent.post(f"/employeurs/{eid}/effacements/{request_id}",
                                   {"decision": "refuser", "reason": "Dossier de paie de Julie Moreau en cours."})
    assert response.status_code == 303
    assert await account_id(runtime, "agent@bellerive.example")
    mail = (await mailbox.wait_for("agent@bellerive.example", sent + 1))[-1]
    assert "Dossier de paie de Julie Moreau en cours." in mail.get_body(preferencelist=("plain",)).get_content()
    assert "Refusée" in (await person.get("/compte/effacement")).text
    # Already decided: nothing more happens.
    response = await referent.post(f"/employeurs/{eid}/effacements/{request_id}", {"decision": "confirmer"})
    assert response.status_code == 303 and await account_id(runtime, "agent@bellerive.example")
    # Erased later: the refusal's reason, written about her, goes too (journal and request).
    mid = await membership_id(runtime, "agent@bellerive.example")
    assert (await referent.post(f"/employeurs/{eid}/agents/{mid}/supprimer")).status_code == 303
    assert await scan(runtime, ["Moreau", "agent@bellerive.example"]) == []
    assert (await verify(runtime)).intact


async def test_a_shared_account_only_leaves_the_confirming_employer(make_browser, runtime: Runtime) -> None:
    shared = "secretariat@coteaux.example"  # référent of the SIVOM, agent of Val-Fleuri
    person = await logged_in(make_browser, shared)
    assert (await person.post("/compte/effacement", {"message": "Départ"})).status_code == 303
    assert await scalar(runtime, select(func.count()).select_from(ErasureRequest)) == 2
    sivom = await employer_id(runtime, SIVOM)
    # The only other member of the SIVOM who may decide is the CIG admin (no second référent there).
    admin = await logged_in(make_browser, CIG_ADMIN)
    request_id = await scalar(runtime, select(ErasureRequest.id).where(ErasureRequest.employer_id == sivom))
    response = await admin.post(f"/employeurs/{sivom}/effacements/{request_id}", {"decision": "confirmer"})
    assert response.status_code == 303
    # Last référent of the SIVOM: refused, nothing changed.
    assert await membership_id(runtime, shared, SIVOM)
    assert await scalar(runtime, select(ErasureRequest.decided_at).where(ErasureRequest.id == request_id)) is None


async def test_cig_admin_erases_a_staff_account(make_browser, runtime: Runtime) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    uid = await account_id(runtime, "a.petit@cig-demo.fr")
    page = await admin.get(f"/admin/comptes/{uid}/effacer")
    assert page.status_code == 200 and "a.petit@cig-demo.fr" in page.text
    wrong = await admin.post(f"/admin/comptes/{uid}/effacer", {"confirmation": "autre@cig-demo.fr"})
    assert wrong.status_code == 422 and "Recopiez exactement" in wrong.text
    assert await account_id(runtime, "a.petit@cig-demo.fr") == uid
    response = await admin.post(f"/admin/comptes/{uid}/effacer", {"confirmation": "A.Petit@cig-demo.fr"})
    assert response.status_code == 303
    assert await scalar(runtime, select(Account.id).where(Account.id == uid)) is None
    assert await scan(runtime, ["a.petit@cig-demo.fr"]) == []
    assert (await verify(runtime)).intact


async def test_deleting_an_employer_erases_its_own_accounts_only(make_browser, runtime: Runtime) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    valfleuri = await employer_id(runtime, "21930888800011")
    page = await admin.get(f"/admin/employeurs/{valfleuri}/supprimer")
    assert page.status_code == 200 and "1 compte(s) ne servant que cet employeur" in page.text
    wrong = await admin.post(f"/admin/employeurs/{valfleuri}/supprimer", {"siret": "123"})
    assert wrong.status_code == 422 and await scalar(runtime, select(Employer.id).where(Employer.id == valfleuri))
    response = await admin.post(f"/admin/employeurs/{valfleuri}/supprimer", {"siret": "219 308 888 00011"})
    assert response.status_code == 303
    assert await scalar(runtime, select(Employer.id).where(Employer.id == valfleuri)) is None
    # The maire of Val-Fleuri served only it: erased. Nadia also serves the SIVOM: she stays.
    assert await scan(runtime, ["maire@valfleuri.example"]) == []
    assert await membership_id(runtime, "secretariat@coteaux.example", SIVOM)
    assert await scalar(runtime, select(func.count()).select_from(Membership).where(
        Membership.employer_id == valfleuri)) == 0
    assert await scalar(runtime, select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "employer:delete", AuditEvent.employer_id == valfleuri)) == 1
    assert (await verify(runtime)).intact
    assert BELLERIVE


async def test_a_referent_cannot_decide_another_employers_request(make_browser, runtime: Runtime) -> None:
    person = await logged_in(make_browser, "technique@coteaux.example")
    assert (await person.post("/compte/effacement", {})).status_code == 303
    request_id = await scalar(runtime, select(ErasureRequest.id))
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    sivom = await employer_id(runtime, SIVOM)
    assert (await referent.get(f"/employeurs/{sivom}/effacements")).status_code in (403, 404)
    listed = await referent.get(f"/employeurs/{eid}/effacements")
    assert listed.status_code == 200 and "technique@coteaux.example" not in listed.text
    for url in (f"/employeurs/{eid}/effacements/{request_id}", f"/employeurs/{sivom}/effacements/{request_id}"):
        response = await referent.post(url, {"decision": "confirmer"})
        assert response.status_code in (403, 404)
    assert await account_id(runtime, "technique@coteaux.example")
    assert await scalar(runtime, select(ErasureRequest.decided_at)) is None
