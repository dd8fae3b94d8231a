"""Inactive accounts, driven by the maintenance clock: a warning (French text + HTML) to the person and a
notice to the référents of each of their employers after 6 months without login, once per inactivity period;
suspension per membership after 12 months through the référents' own suspension path (applications' sessions
ended with back-channel logout, journal entry by "système"); CIG staff and an employer's last référent spared;
"inactif depuis le …" in the agents grid. Mail is read from the real SMTP server."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from convergences.accounts.models import Account
from convergences.audit.actions import Action
from convergences.audit.models import AuditEvent
from convergences.db import transaction, utcnow
from convergences.employers.models import Membership
from convergences.maintenance.clock import months_after
from convergences.maintenance.inactivity import PARIS
from convergences.maintenance.jobs import JOBS, run_maintenance
from convergences.oidc.models import Client, LogoutDelivery, RpSession
from convergences.runtime import Runtime
from tests.helpers import REFERENT, account_id, employer_id, execute, logged_in, membership, scalar
from tests.mailbox import Mailbox, text_body

AGENT = "agent@bellerive.example"  # Julie Moreau, agent of Bellerive (référents: rh@ and paie@)
PAIE = "paie@bellerive.example"
ADMIN = "admin@cig-demo.fr"
CCAS = "26930999900010"
INACTIVITY = {"inactivity-warnings", "inactivity-suspensions"}


async def _run(rt: Runtime, now: datetime) -> dict[str, int]:
    results, _, _ = await run_maintenance(rt, now)
    return {r.job.name: r.count for r in results if r.job.name in INACTIVITY}


def _subjects(mailbox: Mailbox, recipient: str) -> list[str]:
    return [str(m["Subject"]) for m in mailbox.to(recipient)]


async def _baseline(rt: Runtime) -> datetime:
    """Every demo person logged in at the same instant: the clock starts there."""
    start = utcnow()
    await execute(rt, update(Account).where(Account.activated_at.is_not(None)).values(last_login_at=start))
    return start


async def test_warned_once_per_period_then_suspended(runtime: Runtime, mailbox: Mailbox) -> None:
    start = await _baseline(runtime)
    seen = {who: len(mailbox.to(who)) for who in (AGENT, REFERENT, PAIE, ADMIN)}
    assert await _run(runtime, months_after(start, 6) - timedelta(days=1)) == dict.fromkeys(INACTIVITY, 0)

    warn_at = months_after(start, 6) + timedelta(days=1)
    counts = await _run(runtime, warn_at)
    assert counts["inactivity-warnings"] >= 1 and counts["inactivity-suspensions"] == 0
    [warning] = (await mailbox.wait_for(AGENT, seen[AGENT] + 1))[seen[AGENT]:]
    assert str(warning["Subject"]) == "Votre compte Convergences est inactif"
    body = text_body(warning)
    assert "Commune de Bellerive-sur-Marne" in body and "suspendu" in body
    assert warning.get_body(preferencelist=("html",)) is not None
    # Each référent of her employer gets a notice naming her; CIG staff get nothing.
    for referent in (REFERENT, PAIE):
        await mailbox.wait_for(referent, seen[referent] + 1)
        assert "Compte inactif : Julie Moreau (Commune de Bellerive-sur-Marne)" in _subjects(mailbox, referent)
    assert len(mailbox.to(ADMIN)) == seen[ADMIN]

    # Same period: not warned again, whatever the number of runs.
    total = len(mailbox.messages)
    assert await _run(runtime, warn_at + timedelta(days=10)) == dict.fromkeys(INACTIVITY, 0)
    assert len(mailbox.messages) == total

    # An application session, to see the back-channel logout of the suspension.
    agent = await account_id(runtime, AGENT)
    async with transaction(runtime.maker) as db:
        client = await db.scalar(select(Client).where(Client.client_id == "demo-bip"))
        assert client is not None
        db.add(RpSession(sid="inactive-sid", client_pk=client.id, account_id=agent,
                         employer_id=await employer_id(runtime)))
    suspend_at = months_after(start, 12) + timedelta(days=1)
    counts = await _run(runtime, suspend_at)
    assert counts["inactivity-suspensions"] >= 1
    julie = await membership(runtime, AGENT)
    assert julie is not None and julie.suspended_at == suspend_at
    entry = await scalar(runtime, select(AuditEvent).where(AuditEvent.action == Action.MEMBERSHIP_SUSPEND.value,
                                                           AuditEvent.target_id == julie.id))
    assert entry.actor_label == "système" and entry.after["motif"] == "inactivité"
    assert await scalar(runtime, select(LogoutDelivery.id).where(LogoutDelivery.uri.like("%8001%"))) is not None
    assert await _run(runtime, suspend_at) == dict.fromkeys(INACTIVITY, 0)  # idempotent


async def test_last_referent_and_staff_are_not_suspended(runtime: Runtime, mailbox: Mailbox) -> None:
    start = await _baseline(runtime)
    # The CIG administrator also serves Bellerive as an agent: still CIG staff, never warned nor suspended.
    async with transaction(runtime.maker) as db:
        db.add(Membership(account_id=await account_id(runtime, ADMIN), employer_id=await employer_id(runtime)))
    seen_admin = len(mailbox.to(ADMIN))
    await _run(runtime, months_after(start, 6) + timedelta(days=1))
    await _run(runtime, months_after(start, 12) + timedelta(days=1))
    # CCAS: Léa (agent) suspended; Isabelle, its only référent, kept so the CCAS never lacks one.
    lea = await membership(runtime, "accueil@ccas-bellerive.example", CCAS)
    isabelle = await membership(runtime, "direction@ccas-bellerive.example", CCAS)
    assert lea is not None and isabelle is not None
    assert lea.suspended_at is not None and isabelle.suspended_at is None
    admin = await membership(runtime, ADMIN)
    assert admin is not None and admin.suspended_at is None
    await mailbox.wait_for(AGENT)  # the run's mail went out…
    assert len(mailbox.to(ADMIN)) == seen_admin  # …and none to the administrator


async def test_a_login_opens_a_new_period_and_a_new_warning(runtime: Runtime, mailbox: Mailbox) -> None:
    start = await _baseline(runtime)
    await _run(runtime, months_after(start, 6) + timedelta(days=1))
    first = len(mailbox.to(AGENT))
    back = months_after(start, 7)
    await execute(runtime, update(Account).where(Account.email == AGENT).values(last_login_at=back))
    await _run(runtime, months_after(back, 6) - timedelta(days=1))
    assert len(mailbox.to(AGENT)) == first
    await _run(runtime, months_after(back, 6) + timedelta(days=1))
    await mailbox.wait_for(AGENT, first + 1)
    # And the earlier warning does not count for the new period's suspension: not suspended 12 months
    # after the first login, only after the second.
    await _run(runtime, months_after(start, 12) + timedelta(days=2))
    assert (await membership(runtime, AGENT)).suspended_at is None  # type: ignore[union-attr]


async def test_never_logged_in_counts_from_creation(runtime: Runtime, mailbox: Mailbox) -> None:
    # Lucas Girard was invited by the demo seed and never came.
    seen = len(mailbox.to("l.girard@bellerive.example"))
    created = await scalar(runtime, select(Account.created_at).where(Account.email == "l.girard@bellerive.example"))
    await _run(runtime, months_after(created, 6) + timedelta(days=1))
    [mail] = (await mailbox.wait_for("l.girard@bellerive.example", seen + 1))[seen:]
    assert "jamais connecté" in text_body(mail)


async def test_the_grid_shows_inactive_since(runtime: Runtime, make_browser: Any) -> None:
    long_ago = utcnow() - timedelta(days=200)
    await execute(runtime, update(Account).where(Account.email == AGENT).values(last_login_at=long_ago))
    browser = await logged_in(make_browser, REFERENT)
    html = (await browser.get(f"/employeurs/{await employer_id(runtime)}/agents")).text
    julie = html.split("Moreau Julie")[1].split("</tr>")[0]
    assert "inactif depuis le " + long_ago.astimezone(PARIS).strftime("%d/%m/%Y") in julie
    # Only the inactive person carries it: Sophie, the référent who just logged in, does not.
    assert "inactif" not in html.split("Martin Sophie")[1].split("</tr>")[0]


def test_inactivity_jobs_are_registered() -> None:
    assert INACTIVITY <= {j.name for j in JOBS}
