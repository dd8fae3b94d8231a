"""Retention of the journal: connection logs 12 months, the administrative journal 5 years (configurable).

A purged entry becomes a *tombstone*: its content is emptied but its place in the hash chain (seq,
prev_hash, hash, content_digest) stays, so ``audit verify`` still checks every link (see
:mod:`convergences.audit.chain`). This is the only path allowed to empty entries, through the explicit
``rewriting(db, "purge")`` exemption of the append-only guard.
"""

from __future__ import annotations

import calendar
from datetime import datetime

from sqlalchemy import null, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.audit.actions import Action
from convergences.audit.models import AuditEvent, rewriting
from convergences.audit.services import record
from convergences.settings import Settings

# Connection logs: login successes and failures, whatever the factor (password, second factor…), and
# logouts. Every other action is the administrative journal.
CONNECTION_ACTION_PREFIXES = ("account:login", "account:logout")


def months_before(moment: datetime, months: int) -> datetime:
    """The same day and time ``months`` calendar months earlier (clamped to the month's last day)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def is_connection_log() -> object:
    return or_(*(AuditEvent.action.like(prefix + "%") for prefix in CONNECTION_ACTION_PREFIXES))


async def purge_journal(db: AsyncSession, now: datetime, settings: Settings) -> int:
    """Turn the entries past their retention into tombstones (caller's transaction); return how many.

    Connection logs older than ``settings.retention.connection_months`` months, every entry older than
    ``settings.retention.journal_years`` years. Idempotent: a second run at the same ``now`` purges 0.
    A run that purged something is itself journaled (with the counts and cut-offs, no personal data)."""
    connection_cutoff = months_before(now, settings.retention.connection_months)
    journal_cutoff = months_before(now, 12 * settings.retention.journal_years)
    expired = (AuditEvent.purged_at.is_(None)
               & or_(is_connection_log() & (AuditEvent.at < connection_cutoff), AuditEvent.at < journal_cutoff))
    with rewriting(db, "purge"):
        result = await db.execute(update(AuditEvent).where(expired).values(
            actor_id=None, actor_label="", employer_id=None, application_id=None, action=Action.JOURNAL_PURGED.value,
            target_type="", target_id=None, target_label="", before=null(), after=null(), ip=None,
            actor_key_id=None, subject_key_id=None, actor_commitment=None, subject_commitment=None,
            purged_at=now).execution_options(synchronize_session=False))
    purged = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if purged:
        entry = record(db, None, Action.JOURNAL_PURGE, after={
            "purged": purged, "connection_logs_before": connection_cutoff.isoformat(),
            "journal_before": journal_cutoff.isoformat()})
        entry.at = now  # the run's own clock: a second run at the same ``now`` finds nothing to purge
    return purged
