"""Access review campaigns: opened by the CIG admin, reviewed by each employer's référents one click per right
("Retirer" revokes through the grant service: journal, applications' sessions ended, back-channel logout),
signed off with a certificate in the journal; progress for correspondents (their portfolio only) and the CIG;
reminders from `convergences maintenance`, once each, read from the real SMTP server."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select

from convergences.applications.models import Grant
from convergences.audit.actions import Action
from convergences.audit.models import AuditEvent
from convergences.db import transaction, utcnow
from convergences.employers.models import Membership
from convergences.maintenance.jobs import JOBS, run_jobs
from convergences.oidc.models import Client, LogoutDelivery, RpSession
from convergences.reviews.models import ReviewCampaign, ReviewScope
from convergences.runtime import Runtime
from tests.helpers import (
    CIG_ADMIN,
    REFERENT,
    SIVOM,
    app_id,
    employer_id,
    logged_in,
    membership_id,
    rows,
    scalar,
)
from tests.mailbox import Mailbox, text_body

AGENT = "agent@bellerive.example"
SIVOM_REFERENT = "secretariat@coteaux.example"
REMINDERS = next(j for j in JOBS if j.name == "review-reminders")


async def _open(make_browser: Any, runtime: Runtime, name: str, *employer_ids: int, days: int = 30) -> int:
    admin = await logged_in(make_browser, CIG_ADMIN)
    deadline = (date.today() + timedelta(days=days)).isoformat()
    response = await admin.post("/admin/revues", {"name": name, "deadline": deadline,
                                                  "scope": "selection" if employer_ids else "all",
                                                  "employers": [str(e) for e in employer_ids]})
    assert response.status_code == 303, response.text[:500]
    return int(await scalar(runtime, select(ReviewCampaign.id).where(ReviewCampaign.name == name)))


async def _count(rt: Runtime, stmt: Any) -> int:
    return int(await scalar(rt, select(func.count()).select_from(stmt.subquery())))


async def test_open_a_campaign_validates_and_is_journaled(runtime: Runtime, make_browser: Any) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    bad = await admin.post("/admin/revues", {"name": "T1", "deadline": "2020-01-01", "scope": "selection"})
    assert bad.status_code == 422
    assert "postérieure à aujourd" in bad.text and "au moins 3 caractères" in bad.text
    assert "Choisissez au moins un employeur" in bad.text
    assert 'aria-describedby="f-deadline-hint f-deadline-error"' in bad.text
    assert await _count(runtime, select(ReviewCampaign)) == 0
    # Not for a référent.
    referent = await logged_in(make_browser, REFERENT)
    refused = await referent.post("/admin/revues", {"name": "Revue", "deadline": "2099-01-01", "scope": "all"})
    assert refused.status_code == 403
    campaign = await _open(make_browser, runtime, "Revue T1", await employer_id(runtime))
    assert await _count(runtime, select(ReviewScope).where(ReviewScope.campaign_id == campaign)) == 1
    assert await scalar(runtime, select(AuditEvent.target_label).where(
        AuditEvent.action == Action.REVIEW_OPEN.value)) == "Revue T1"
    # "All employers" covers every employer.
    everyone = await _open(make_browser, runtime, "Revue de tous", days=60)
    assert await _count(runtime, select(ReviewScope).where(ReviewScope.campaign_id == everyone)) == 4


async def test_referent_reviews_every_right_revokes_and_signs_off(runtime: Runtime, make_browser: Any) -> None:
    bellerive = await employer_id(runtime)
    campaign = await _open(make_browser, runtime, "Revue du trimestre", bellerive)
    base = f"/employeurs/{bellerive}/revues/{campaign}"
    referent = await logged_in(make_browser, REFERENT)
    assert base in (await referent.get(f"/employeurs/{bellerive}/revues")).text
    assert f"/employeurs/{bellerive}/revues" in (await referent.get(f"/employeurs/{bellerive}")).text
    sheet = (await referent.get(base)).text
    grants = await _count(runtime, select(Grant).join(Grant.membership).where(
        Membership.employer_id == bellerive))
    assert grants == 6 and sheet.count('<tr id="line-') == grants and f"0 / {grants}" in sheet

    # One click "Conserver": the row comes back swapped, the progress out of band.
    rh, julie = await membership_id(runtime, REFERENT), await membership_id(runtime, AGENT)
    bip = await app_id(runtime, "bip")
    kept = await referent.post(f"{base}/lignes/{rh}/{bip}", {"decision": "keep"}, htmx=True)
    assert kept.status_code == 200 and kept.text.lstrip().startswith(f'<tr id="line-{rh}-{bip}"')
    assert "Conservé" in kept.text and 'hx-swap-oob="true"' in kept.text and f"1 / {grants}" in kept.text

    # "Retirer" really revokes: grant gone, journaled twice (decision + revocation), application logged out.
    async with transaction(runtime.maker) as db:
        client = await db.scalar(select(Client).where(Client.client_id == "demo-bip"))
        assert client is not None
        db.add(RpSession(sid="review-sid", client_pk=client.id, account_id=(await scalar(
            runtime, select(Membership.account_id).where(
                Membership.id == julie))), employer_id=bellerive))
    revoked = await referent.post(f"{base}/lignes/{julie}/{bip}", {"decision": "revoke"}, htmx=True)
    assert revoked.status_code == 200 and "Retiré" in revoked.text
    assert await scalar(runtime, select(Grant.id).where(Grant.membership_id == julie,
                                                        Grant.application_id == bip)) is None
    actions = await rows(runtime, select(AuditEvent.action).where(AuditEvent.target_id == julie,
                                                                  AuditEvent.application_id == bip))
    assert {Action.REVIEW_DECIDE.value, Action.GRANT_REVOKE.value} <= set(actions)
    assert await scalar(runtime, select(RpSession.ended_at).where(RpSession.sid == "review-sid")) is not None
    assert await _count(runtime, select(LogoutDelivery)) >= 1
    # The revoked right stays on the sheet, counted.
    sheet = (await referent.get(base)).text
    assert sheet.count('<tr id="line-') == grants and f"2 / {grants}" in sheet

    # Not finished while a right has no decision.
    early = await referent.post(f"{base}/terminer", {})
    assert early.status_code == 303 and early.headers["location"] == base
    assert await scalar(runtime, select(ReviewScope.completed_at).where(ReviewScope.campaign_id == campaign)) is None
    assert "Il reste 4 droit(s) sans d" in (await referent.get(base)).text

    for line in re.findall(r'id="line-(\d+)-(\d+)"', sheet):
        await referent.post(f"{base}/lignes/{line[0]}/{line[1]}", {"decision": "keep"})
    done = await referent.post(f"{base}/terminer", {})
    assert done.status_code == 303 and done.headers["location"] == base + "/certificat"
    certificate = await scalar(runtime, select(AuditEvent).where(AuditEvent.action == Action.REVIEW_COMPLETE.value))
    assert certificate.after["conserves"] == 5 and certificate.after["retires"] == 1
    assert certificate.actor_label.startswith("Sophie Martin") and certificate.employer_id == bellerive
    page = (await referent.get(base + "/certificat")).text
    assert "Certificat de revue des droits d'accès" in page and "Sophie Martin" in page
    assert re.search(r"Droits conservés</dt><dd>5<", page) and re.search(r"Droits retirés</dt><dd>1<", page)
    # Completed: decisions are frozen.
    late = await referent.post(f"{base}/lignes/{rh}/{bip}", {"decision": "revoke"})
    assert late.status_code == 303
    assert await scalar(runtime, select(Grant.id).where(Grant.membership_id == rh, Grant.application_id == bip))


async def test_progress_for_the_correspondent_portfolio_and_the_admin(runtime: Runtime, make_browser: Any) -> None:
    bellerive, sivom = await employer_id(runtime), await employer_id(runtime, SIVOM)
    campaign = await _open(make_browser, runtime, "Revue portefeuille", bellerive, sivom)
    referent = await logged_in(make_browser, REFERENT)
    rh, bip = await membership_id(runtime, REFERENT), await app_id(runtime, "bip")
    await referent.post(f"/employeurs/{bellerive}/revues/{campaign}/lignes/{rh}/{bip}", {"decision": "keep"})
    bernard = await logged_in(make_browser, "c.bernard@cig-demo.fr")  # Bellerive and the CCAS
    page = (await bernard.get(f"/revues/{campaign}")).text
    assert "Commune de Bellerive-sur-Marne" in page and "En cours (16 %)" in page
    assert "SIVOM des Coteaux" not in page
    assert "Revue portefeuille" in (await bernard.get("/revues")).text
    admin = await logged_in(make_browser, CIG_ADMIN)
    page = (await admin.get(f"/revues/{campaign}")).text
    assert "SIVOM des Coteaux" in page and "Non commencée" in page
    # A campaign covering none of the correspondent's employers is not found for them.
    other = await _open(make_browser, runtime, "Revue SIVOM seul", sivom)
    assert (await bernard.get(f"/revues/{other}")).status_code == 404
    assert "Revue SIVOM seul" not in (await bernard.get("/revues")).text


async def test_a_referent_cannot_see_or_decide_another_employers_lines(runtime: Runtime, make_browser: Any) -> None:
    bellerive, sivom = await employer_id(runtime), await employer_id(runtime, SIVOM)
    campaign = await _open(make_browser, runtime, "Revue deux employeurs", bellerive, sivom)
    julie, bip = await membership_id(runtime, AGENT), await app_id(runtime, "bip")
    nadia = await logged_in(make_browser, SIVOM_REFERENT)
    assert (await nadia.get(f"/employeurs/{bellerive}/revues/{campaign}")).status_code == 403
    assert (await nadia.post(f"/employeurs/{bellerive}/revues/{campaign}/lignes/{julie}/{bip}",
                             {"decision": "revoke"})).status_code == 403
    # Her own employer in the path, Bellerive's line: not found.
    assert (await nadia.post(f"/employeurs/{sivom}/revues/{campaign}/lignes/{julie}/{bip}",
                             {"decision": "revoke"})).status_code == 404
    assert await scalar(runtime, select(Grant.id).where(Grant.membership_id == julie, Grant.application_id == bip))
    sheet = (await nadia.get(f"/employeurs/{sivom}/revues/{campaign}")).text
    assert "Moreau" not in sheet and "agent@bellerive.example" not in sheet


async def test_reminders_at_opening_before_and_after_the_deadline_once_each(
        runtime: Runtime, make_browser: Any, mailbox: Mailbox) -> None:
    sivom = await employer_id(runtime, SIVOM)
    campaign = await _open(make_browser, runtime, "Revue relances", sivom, days=20)
    deadline = await scalar(runtime, select(ReviewCampaign.deadline).where(ReviewCampaign.id == campaign))
    seen = len(mailbox.to(SIVOM_REFERENT))

    async def remind(when: Any) -> int:
        [result] = await run_jobs(runtime, when, [REMINDERS])
        await runtime.mailer.deliver_pending()
        return result.count

    now = utcnow()
    assert await remind(now) == 1
    [opening] = (await mailbox.wait_for(SIVOM_REFERENT, seen + 1))[seen:]
    assert "à faire avant le" in str(opening["Subject"]) and "SIVOM des Coteaux" in str(opening["Subject"])
    assert f"/employeurs/{sivom}/revues/{campaign}" in text_body(opening)
    assert await remind(now + timedelta(days=1)) == 0
    assert await remind(deadline - timedelta(days=6)) == 1
    [soon] = (await mailbox.wait_for(SIVOM_REFERENT, seen + 2))[seen + 1:]
    assert str(soon["Subject"]).startswith("Rappel")
    assert await remind(deadline - timedelta(days=2)) == 0
    assert await remind(deadline + timedelta(days=1)) == 1
    [late] = (await mailbox.wait_for(SIVOM_REFERENT, seen + 3))[seen + 2:]
    assert "en retard" in str(late["Subject"])
    assert await remind(deadline + timedelta(days=30)) == 0
    assert len(mailbox.to(SIVOM_REFERENT)) == seen + 3
    # A campaign first seen after its deadline sends only the late reminder.
    other = await _open(make_browser, runtime, "Revue tardive", sivom, days=3)
    assert other and await remind(now + timedelta(days=10)) == 1
    assert await remind(now + timedelta(days=11)) == 0
