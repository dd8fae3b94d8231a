"""Journal retention: connection logs 12 months, the administrative journal 5 years; purged entries leave
tombstones in the middle of the chain and ``audit verify`` stays green; the purge is idempotent."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from convergences.audit import services as audit
from convergences.audit.actions import Action
from convergences.audit.models import AppendOnlyViolation, AuditEvent
from convergences.audit.retention import months_before, purge_journal
from convergences.db import transaction, utcnow
from convergences.runtime import Runtime
from tests.helpers import rows

DAY = timedelta(days=1)


async def old_entries(rt: Runtime, now: datetime) -> dict[str, int]:
    """Entries of known ages, written between newer ones (so tombstones end up mid-chain)."""
    ages = {"login_13_months": (Action.LOGIN_SUCCESS, months_before(now, 13)),
            "failure_13_months": (Action.LOGIN_FAILURE, months_before(now, 13)),
            "login_11_months": (Action.LOGIN_SUCCESS, months_before(now, 11)),
            "admin_13_months": (Action.GRANT_ADD, months_before(now, 13)),
            "admin_61_months": (Action.EMPLOYER_UPDATE, months_before(now, 61)),
            "admin_59_months": (Action.EMPLOYER_UPDATE, months_before(now, 59))}
    ids = {}
    for name, (action, at) in ages.items():
        async with transaction(rt.maker) as db:
            event = audit.record(db, None, action, target_type="account", target_label=f"Label {name}",
                                 after={"email": f"{name}@retention.example"}, ip="192.0.2.77")
            event.at = at
            await db.flush()
            ids[name] = event.id
            audit.record(db, None, Action.EMPLOYER_UPDATE, target_label="entre deux")
    return ids


async def test_purge_keeps_the_chain_and_is_idempotent(runtime: Runtime) -> None:
    now = utcnow()
    ids = await old_entries(runtime, now)
    async with transaction(runtime.maker) as db:
        assert await purge_journal(db, now, runtime.settings) == 3
    by_id = {e.id: e for e in await rows(runtime, select(AuditEvent))}
    purged = {name for name, i in ids.items() if by_id[i].purged_at is not None}
    assert purged == {"login_13_months", "failure_13_months", "admin_61_months"}
    for name in purged:
        tomb = by_id[ids[name]]
        assert (tomb.actor_label, tomb.target_label, tomb.before, tomb.after, tomb.ip, tomb.employer_id) == (
            "", "", None, None, None, None)
        assert tomb.action == "journal:purged" and tomb.hash and tomb.content_digest
    assert by_id[ids["login_11_months"]].target_label == "Label login_11_months"
    last = max(by_id.values(), key=lambda e: e.seq)
    assert last.action == "journal:purge" and last.after["purged"] == 3
    async with transaction(runtime.maker) as db:
        report = await audit.verify(db)
    assert report.intact, report.problem
    # A second run finds nothing, and journals nothing.
    async with transaction(runtime.maker) as db:
        assert await purge_journal(db, now, runtime.settings) == 0
    assert len(await rows(runtime, select(AuditEvent))) == len(by_id)
    # The tombstones are out of the readable journal.
    shown = await rows(runtime, audit.everything())
    assert not {e.id for e in shown} & {ids[n] for n in purged}


async def test_retention_periods_come_from_the_settings(runtime: Runtime) -> None:
    now = utcnow()
    ids = await old_entries(runtime, now)
    longer = runtime.settings.with_(
        retention=replace(runtime.settings.retention, connection_months=24, journal_years=10))
    async with transaction(runtime.maker) as db:
        assert await purge_journal(db, now, longer) == 0
    shorter = runtime.settings.with_(
        retention=replace(runtime.settings.retention, connection_months=6, journal_years=1))
    async with transaction(runtime.maker) as db:
        assert await purge_journal(db, now, shorter) == 6
    assert {e.id for e in await rows(runtime, select(AuditEvent).where(AuditEvent.purged_at.is_not(None)))} == set(
        ids.values())
    async with transaction(runtime.maker) as db:
        assert (await audit.verify(db)).intact


async def test_a_tombstone_changed_afterwards_is_found(runtime: Runtime) -> None:
    from sqlalchemy import text

    now = utcnow()
    ids = await old_entries(runtime, now)
    async with transaction(runtime.maker) as db:
        await purge_journal(db, now, runtime.settings)
    async with transaction(runtime.maker) as db:
        await db.execute(text("UPDATE audit_event SET content_digest = :d WHERE id = :id"),
                         {"d": "0" * 64, "id": ids["admin_61_months"]})
        report = await audit.verify(db)
    assert report.broken_id == ids["admin_61_months"] and "modifié" in report.problem
    async with transaction(runtime.maker) as db:
        await db.execute(text("UPDATE audit_event SET target_label = 'revenu' WHERE id = :id"),
                         {"id": ids["login_13_months"]})
        report = await audit.verify(db)
    assert report.broken_id == ids["login_13_months"] and "purgée" in report.problem


async def test_only_the_purge_may_rewrite_entries(runtime: Runtime) -> None:
    async with transaction(runtime.maker) as db:
        with pytest.raises(AppendOnlyViolation):
            await db.execute(update(AuditEvent).values(purged_at=utcnow()))


def test_months_before_clamps_to_the_end_of_the_month() -> None:
    moment = datetime(2026, 3, 31, 12, 0)
    assert months_before(moment, 1) == datetime(2026, 2, 28, 12, 0)
    assert months_before(moment, 12) == datetime(2025, 3, 31, 12, 0)
    assert months_before(moment, 60) == datetime(2021, 3, 31, 12, 0)
